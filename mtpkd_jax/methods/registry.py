"""Every method, by name: what it trains and how its student is distilled.

One registry, chosen by ``config.methods``. Adding a method is one :class:`Method` entry.

* ``<modality>_only`` (``visual_only`` is the visual one): stage 0's unimodal model.
* ``joint_teacher``: stage 1's fusion of every modality (needs them all at test time: the
  upper bound).
* Students (video only at test time), all on the same student network:
  ``pkd`` (M2PKD-style cosine feature matching), ``logit_kd``, ``spkd``
  (similarity-preserving), ``rkd`` (relational), ``pkdot`` (structural OT with the joint
  teacher) and ``mt_pkdot`` (structural OT with routing over the stage-2 teachers).
* CMKT (the weak test-time modality learns from a frozen strong one,
  :mod:`~mtpkd_jax.methods.cmkt`), all weighed by ``config.method_params.cmkt``:
  ``cmkt_translation`` (task + translation), ``cmkt_alignment`` (task + latent alignment),
  ``cmkt`` (both) and ``cmkt_ot`` (both, plus MT-PKDOT's structural OT term between the
  pooled weak and strong embeddings).

A student's or a CMKT method's **variant** is named
``<method>:<key>=<value>[,<key>=<value>...]``, e.g. ``mt_pkdot:anchors=most`` or
``mt_pkdot:k=10,gamma=0``: the method with those entries of its ``config.method_params``
replaced (:func:`method_params`; dotted keys reach nested entries,
``pkdot:schedule.params.blur=0.05``). Variants train as stages of their own, beside the
method itself, so that one run compares them on the same folds and seeds.

A student's loss is named terms (``task``, then ``kd``, or ``ot`` and ``centroid``) weighed by
the method's ``alpha``, ``beta`` and ``gamma`` (:mod:`mtpkd_jax.methods.objective`). Its
distillation gets the per-sample teacher targets of its batch:
``teacher_z [B, T, d]`` and ``teacher_out [B, T, C]`` for ``T`` candidate teachers (one
for the joint teacher; every adapted modality plus the joint for ``mt_pkdot``), and the
labels ``y`` of the batch's first rows: all of them, or, for a student that also sees the
examples a label budget leaves unlabelled (``unlabelled``), the labelled ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import jax
import jax.numpy as jnp
import ml_collections

from mtpkd_jax import ot
from mtpkd_jax.losses import distill
from mtpkd_jax.losses import task as task_lib
from mtpkd_jax.methods import params as params_lib
from mtpkd_jax.methods import typed
from mtpkd_jax.models import translation as decoders

DistillFn = Callable[..., tuple[dict[str, jax.Array], dict[str, jax.Array]]]

# The config entries weighing a student's loss terms (:func:`objective.total`).
_KD_WEIGHTS = {"task": "alpha", "kd": "beta"}
_OT_WEIGHTS = {"task": "alpha", "ot": "beta", "centroid": "gamma"}
_CMKT_WEIGHTS = {"task": "task_weight", "translation": "lambda_tr", "alignment": "lambda_al"}
# The kinds of method that are trained as one stage each, and so have variants.
DISTILLED = ("student", "cmkt")


@dataclasses.dataclass(frozen=True)
class Method:
  """A method's recipe.

  Attributes:
    name: registry key.
    kind: ``unimodal | teacher | student | cmkt``.
    modality: the single modality of a ``unimodal`` method.
    teacher: where a student's teachers come from: ``joint`` (stage 1's ``z_J``) or
      ``aligned`` (stage 2's adapted embeddings and ``z_J``).
    distill: ``distill(cfg, z_s, outputs_s, batch, task) -> (terms, metrics)``: the
      distillation's loss terms by name (:data:`objective.TERMS`) and what else it logs.
    weights: the field of its parameters weighing each loss term, ``task`` included
      (:func:`objective.total`).
    params: the entry of ``config.method_params`` holding its parameters; ``None``: ``name``.
    params_class: the typed class of its parameters (:mod:`~mtpkd_jax.methods.params`).
  """

  name: str
  kind: str
  modality: str | None = None
  teacher: str | None = None
  distill: DistillFn | None = None
  weights: Mapping[str, str] | None = None
  params: str | None = None
  params_class: type | None = None


def structural_terms(cfg: params_lib.StructuralOT, z_s, teachers, weights):
  """The ``ot`` and ``centroid`` terms of ``z_s [B, d]`` against ``teachers [T, B, d_t]``.

  ``k`` is at most ``B - 1``: a training split smaller than the configured batch trains on
  smaller batches (:meth:`mtpkd_jax.methods.context.Context.batch_size`).
  """
  schedule = cfg.sinkhorn_schedule()
  value, aux = ot.structural_ot_loss(
    z_s,
    teachers,
    anchors=cfg.anchors,
    k=min(cfg.k, z_s.shape[0] - 1),
    schedule=schedule,
    teacher_weights=weights,
    backend=cfg.backend,
  )
  centroid = jnp.sum(weights * aux["centroid"])
  return {"ot": value, "centroid": centroid}, {"sinkhorn_iterations": aux["iterations"]}


def route(routing: str, candidate_losses: jax.Array, tau: float) -> jax.Array:
  """Teacher weights ``[T]`` from each candidate's task loss on the batch (last = joint).

  ``min_loss`` one-hot on the lowest loss (the research release), ``joint`` one-hot on
  the joint teacher (PKDOT), ``mean`` uniform, ``softmin`` ``softmax(-loss / tau)``.
  """
  losses = jax.lax.stop_gradient(candidate_losses)
  num = losses.shape[0]
  if routing == "min_loss":
    return jax.nn.one_hot(jnp.argmin(losses), num)
  if routing == "joint":
    return jax.nn.one_hot(num - 1, num)
  if routing == "mean":
    return jnp.full((num,), 1.0 / num)
  if routing == "softmin":
    return jax.nn.softmax(-losses / tau)
  raise ValueError(f"`routing` must be one of {params_lib.ROUTINGS}, got {routing!r}.")


def _joint_feature_kd(feature_loss):
  """A point-to-point or relational KD term against the joint teacher's ``z_J``."""

  def fn(cfg, z_s, outputs_s, batch, task):
    del cfg, outputs_s, task
    return {"kd": feature_loss(z_s, batch["teacher_z"][:, -1])}, {}

  return fn


def _logit_kd(cfg, z_s, outputs_s, batch, task):
  del z_s
  teacher_out = batch["teacher_out"][:, -1]
  if task == "classification":
    kd = distill.logit_kd(outputs_s, teacher_out, cfg.temperature)
  else:
    kd = jnp.mean((outputs_s - jax.lax.stop_gradient(teacher_out)) ** 2)
  return {"kd": kd}, {}


def _pkdot(cfg, z_s, outputs_s, batch, task):
  del outputs_s, task
  teachers = jnp.swapaxes(batch["teacher_z"][:, -1:], 0, 1)
  return structural_terms(cfg, z_s, teachers, jnp.ones((1,)))


def _mt_pkdot(cfg, z_s, outputs_s, batch, task):
  del outputs_s
  # Routed on the labelled rows, the batch's first (every row without unlabelled ones).
  labelled = batch[task_lib.TARGET_KEY].shape[0]
  teacher_out = jnp.swapaxes(batch["teacher_out"][:labelled], 0, 1)
  candidate_losses = jax.vmap(lambda out: task_lib.task_loss(out, batch, task))(teacher_out)
  weights = route(cfg.routing, candidate_losses, cfg.tau)
  teachers = jnp.swapaxes(batch["teacher_z"], 0, 1)
  terms, metrics = structural_terms(cfg, z_s, teachers, weights)
  return terms, {**metrics, "routed_teacher": jnp.argmax(weights)}


def _without(term: str) -> dict[str, str]:
  return {t: key for t, key in _CMKT_WEIGHTS.items() if t != term}


def _registry() -> dict[str, Method]:
  def student(name, teacher, distill_fn, params_class=params_lib.KD, weights=_KD_WEIGHTS):
    return Method(
      name,
      "student",
      teacher=teacher,
      distill=distill_fn,
      weights=weights,
      params_class=params_class,
    )

  def cmkt(name, weights):
    return Method(name, "cmkt", weights=weights, params="cmkt", params_class=params_lib.CMKT)

  methods = [
    Method("joint_teacher", "teacher"),
    student("pkd", "joint", _joint_feature_kd(distill.cosine_distance)),
    student("logit_kd", "joint", _logit_kd, params_lib.LogitKD),
    student("spkd", "joint", _joint_feature_kd(distill.similarity_preserving)),
    student("rkd", "joint", _joint_feature_kd(distill.relational)),
    student("pkdot", "joint", _pkdot, params_lib.PKDOT, _OT_WEIGHTS),
    student("mt_pkdot", "aligned", _mt_pkdot, params_lib.MTPKDOT, _OT_WEIGHTS),
    cmkt("cmkt_translation", _without("alignment")),
    cmkt("cmkt_alignment", _without("translation")),
    cmkt("cmkt", _CMKT_WEIGHTS),
    cmkt("cmkt_ot", {**_CMKT_WEIGHTS, "ot": "lambda_ot"}),
  ]
  return {m.name: m for m in methods}


METHODS = _registry()


def parse_variant(name: str) -> tuple[str, dict[str, str]]:
  """``"mt_pkdot:k=10,anchors=most"`` -> ``("mt_pkdot", {"k": "10", "anchors": "most"})``.

  Raises:
    ValueError: For an override that is not ``key=value``.
  """
  base, _, spec = name.partition(":")
  overrides = {}
  for item in filter(None, spec.split(",")):
    key, sep, value = item.partition("=")
    if not sep or not key or not value:
      raise ValueError(f"Method variant {name!r}: {item!r} is not `key=value`.")
    overrides[key.strip()] = value.strip()
  return base, overrides


def _parse_like(value: str, like, where: str):
  """``value`` (a string) converted to the type of the existing entry ``like``."""
  if isinstance(like, bool):
    if value.lower() not in ("true", "false"):
      raise ValueError(f"{where}: expected true or false, got {value!r}.")
    return value.lower() == "true"
  try:
    return type(like)(value)
  except ValueError:
    raise ValueError(f"{where}: expected a {type(like).__name__}, got {value!r}.") from None


def _entry(params: Mapping[str, Any], key: str):
  """The entry at dotted ``key`` of ``params``, or ``None``."""
  node = params
  for part in key.split("."):
    if not isinstance(node, Mapping) or part not in node:
      return None
    node = node[part]
  return node


def _build_params(
  config: ml_collections.ConfigDict, name: str, entry: str, method: Method
) -> params_lib.Params:
  """The typed parameters of method (or variant) ``name``, from its entry with its overrides.

  A bad entry is named by the variant that set it, or else by its config path.
  """
  base, overrides = parse_variant(name)

  def where(key: str) -> str:
    if any(k == key or k.startswith(f"{key}.") for k in overrides):
      return f"Method variant {name!r}: {key}"
    return f"Method {name!r}: `config.method_params.{entry}.{key}`"

  def fail(key: str, expected: str, value) -> NoReturn:
    raise ValueError(f"{where(key)} must be {expected}, got {value!r}.")

  values = config.method_params[entry].to_dict()
  for key, value in overrides.items():
    *path, leaf = key.split(".")
    node = _entry(values, ".".join(path)) if path else values
    if not isinstance(node, Mapping) or leaf not in node:
      raise ValueError(
        f"Method variant {name!r}: {base} has no parameter {key!r} "
        f"(it has {', '.join(sorted(values))})."
      )
    node[leaf] = _parse_like(value, node[leaf], f"Method variant {name!r}, {key}")
  params = typed.from_section(method.params_class, values, fail)
  if isinstance(params, params_lib.StructuralOT):
    try:
      params.sinkhorn_schedule()
    except (KeyError, ValueError, TypeError) as error:
      raise ValueError(f"{where('schedule')} is not a valid Sinkhorn schedule: {error}") from None
    # A student's or CMKT's structural OT sees the (global) batches of its stage.
    batch = config.stages[method.kind].batch_size
    if not params.k < batch:
      fail(
        "k",
        f"in [1, {batch}) (neighbours within a batch of "
        f"`config.stages.{method.kind}.batch_size` = {batch})",
        params.k,
      )
  if isinstance(params, params_lib.CMKT):
    kind = params.decoder.get("kind", "mlp")
    if kind not in decoders.KINDS:
      fail("decoder.kind", f"one of {decoders.KINDS}", kind)
  return params


def method_params(config: ml_collections.ConfigDict, name: str) -> params_lib.Params:
  """The typed parameters of method or variant ``name`` (see the module docstring).

  The method's ``config.method_params`` entry, with the variant's overrides, as its
  ``params_class`` (:mod:`~mtpkd_jax.methods.params`), checked: every entry's type and
  bounds, the Sinkhorn schedule built, ``k`` against the stage's batch size.

  Raises:
    ValueError: If the method has no parameters, or an override names an entry it does not
      have or gives a value of the wrong type, or an entry is missing, unknown or not allowed
      (naming the variant or the config path that set it).
  """
  base, _ = parse_variant(name)
  method = METHODS.get(base)
  entry = (method.params if method else None) or base
  if method is None or method.params_class is None or entry not in config.method_params:
    raise ValueError(
      f"Method {name!r}: config.method_params has no {entry!r} entry "
      f"(it has {', '.join(config.method_params)})."
    )
  return _build_params(config, name, entry, method)


def check_methods(config: ml_collections.ConfigDict) -> None:
  """Resolves and checks every method of ``config.methods`` and its parameters.

  Called when a run starts, before any data is built or stage trained.

  Raises:
    ValueError: on an unknown method, bad parameters (see :func:`method_params`), or a
      ``baseline`` that is not one of the methods.
  """
  if config.baseline not in config.methods:
    raise ValueError(
      f"`config.baseline` {config.baseline!r} is not one of `config.methods` "
      f"{tuple(config.methods)}: the paired differences are taken against it."
    )
  for name in config.methods:
    if get_method(name, config.visual).kind in DISTILLED:
      method_params(config, name)


def get_method(name: str, visual_modality: str | None = None) -> Method:
  """The method called ``name``; ``<modality>_only`` and ``visual_only`` are unimodal.

  ``visual_modality`` (the config's ``visual``) is the modality of ``visual_only``. A
  student's variant (``<method>:<key>=<value>,...``) is its method under the variant's name.
  """
  base, overrides = parse_variant(name)
  if overrides or base != name:
    method = get_method(base, visual_modality)
    if method.kind not in DISTILLED:
      raise ValueError(
        f"Method variant {name!r}: only students and CMKT methods have variants, not {base!r}."
      )
    return dataclasses.replace(method, name=name)
  if name == "visual_only":
    return Method(name, "unimodal", modality=visual_modality)
  if name.endswith("_only"):
    return Method(name, "unimodal", modality=name.removesuffix("_only"))
  if name not in METHODS:
    raise ValueError(
      f"Unknown method {name!r}; known: visual_only, <modality>_only, {', '.join(METHODS)}."
    )
  return METHODS[name]
