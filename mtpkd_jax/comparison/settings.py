"""Every setting of a comparison checked before anything in its workdir is touched.

A typo must never cost a trained stage: provenance moves a stage whose record changed aside
(:mod:`mtpkd_jax.train.provenance`), so a setting that fails only once its stage starts would
have moved that stage, and every stage after it, for nothing. :func:`check_config` checks
what the config alone decides (runs, folds, dtypes, widths, every stage's schedule, the
encoders' names and keyword arguments, the methods and the candidates they are tuned
over); :func:`check_runs` what needs the dataset and the splits (batches that fit the
training examples and the devices, encoders that take the modality's inputs).
:func:`mtpkd_jax.comparison.runner.run` calls both before it writes anything. Every error is
a ``ValueError`` naming the config field (as ``--config.<field>`` spells it), what was
expected and what was given.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence

import jax
import ml_collections

from mtpkd_jax.methods import context, graph, registry, typed, unimodal
from mtpkd_jax.methods import settings as stage_settings

_fail = typed.config_fail()


@dataclasses.dataclass(frozen=True)
class _RunFields:
  """The config's top-level fields that every run reads, with what each must be."""

  num_runs: int = typed.at_least(1)
  num_folds: int = typed.at_least(1)
  seed: int
  split_seed: int
  embed_dim: int = typed.at_least(1)
  compute_dtype: str = typed.choice(context.DTYPES)
  dropout_rate: float = typed.fraction()
  eval_batch_size: int = typed.at_least(1)
  plot_batch_size: int = typed.at_least(1)
  checkpoint_every: int = typed.at_least(1)
  keep_checkpoints: int = typed.at_least(1)
  label_budget: int = typed.at_least(0)
  label_budgets: tuple[int, ...] = typed.tuple_at_least(0)


def _check_encoder(field: str, spec, config: ml_collections.ConfigDict) -> None:
  """An encoder entry: a registered ``name`` whose module takes its ``kwargs``."""
  if not isinstance(spec, ml_collections.ConfigDict) or "name" not in spec:
    _fail(field, "a dict with `name` and `kwargs` (e.g. {'name': 'mlp', 'kwargs': {}})", spec)
  try:
    context.encoder_from_spec(spec, config)
  except (TypeError, ValueError) as error:
    kwargs = spec.get("kwargs")
    raise ValueError(
      f"`config.{field}`: encoder {spec.name!r} cannot be built with the kwargs "
      f"{kwargs.to_dict() if kwargs else {}}: {error}"
    ) from None


def check_tune(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.tune``: each tuned method's candidates (:mod:`~mtpkd_jax.comparison.tuning`).

  An entry for a known method that ``config.methods`` leaves out is not used, and its
  candidates not checked, like that method's ``config.method_params`` entry.

  Raises:
    ValueError: naming ``config.tune.<method>``: a ``config.tune`` that is not a dict, an
      unknown method, a method that is not a student or CMKT method (visual-only, a
      unimodal model, the joint teacher), candidates that are not a non-empty tuple of
      distinct names, a candidate of another base method, or a candidate with bad
      parameters.
  """
  tune = config.get("tune")
  if tune is None:
    return
  if not isinstance(tune, ml_collections.ConfigDict):
    _fail("tune", "a dict from a method of `config.methods` to its candidates", tune)
  for name in tune:
    try:
      registry.get_method(name, config.visual)
    except ValueError as error:
      raise ValueError(f"`config.tune.{name}`: {error}") from None
  for name in (name for name in config.methods if name in tune):
    field, candidates = f"tune.{name}", tune[name]
    method = registry.get_method(name, config.visual)
    if method.kind not in registry.DISTILLED:
      raise ValueError(
        f"`config.{field}`: {name!r} is a {method.kind} model; only students and CMKT methods "
        "are tuned on validation. Match visual-only with the control instead "
        "(`--config.stages.student.network=visual`), and leave it out of `config.tune`."
      )
    base = registry.parse_variant(name)[0]
    if (
      not isinstance(candidates, tuple | list)
      or not candidates
      or not all(isinstance(c, str) for c in candidates)
      or len(set(candidates)) != len(candidates)
    ):
      _fail(field, f"a non-empty tuple of distinct variant names of {base!r}", candidates)
    for candidate in candidates:
      if registry.parse_variant(candidate)[0] != base:
        raise ValueError(
          f"`config.{field}`: candidate {candidate!r} is not a variant of {base!r} "
          f"(`{base}` or `{base}:<key>=<value>,...`)."
        )
      try:
        registry.method_params(config, candidate)
      except ValueError as error:
        raise ValueError(f"`config.{field}`: candidate {candidate!r}: {error}") from None


def check_config(config: ml_collections.ConfigDict) -> None:
  """Checks every setting the config alone decides; see the module docstring.

  Args:
    config: an experiment config (``experiments/configs/``).

  Raises:
    ValueError: naming the field, what it must be and what it is: counts and widths that
      are not integers >= 1 (runs, folds, ``embed_dim``, batch sizes, checkpoint interval),
      a ``compute_dtype`` other than float32 or bfloat16, a dropout rate outside [0, 1), a
      stage's ``epochs`` or ``batch_size`` below 1 or a learning rate <= 0, an unknown
      encoder or one that does not take its ``kwargs``, a bad method (see
      :func:`mtpkd_jax.methods.registry.check_methods`), bad candidates of a tuned method
      (:func:`check_tune`).
  """
  fields = [f.name for f in dataclasses.fields(_RunFields)]
  typed.from_section(_RunFields, {f: config[f] for f in fields}, _fail)
  if config.num_devices is not None and not (
    typed.is_int(config.num_devices) and config.num_devices >= 1
  ):
    _fail("num_devices", "an integer >= 1", config.num_devices)
  stage_settings.stages_from_config(config)
  for modality in config.encoders:
    _check_encoder(f"encoders.{modality}", config.encoders[modality], config)
  for kind in config.get("encoders_by_kind") or {}:
    _check_encoder(f"encoders_by_kind.{kind}", config.encoders_by_kind[kind], config)
  registry.check_methods(config)
  check_tune(config)


def check_runs(contexts: Sequence[context.Context]) -> None:
  """Checks what needs the runs' data: batches, devices, encoders on the inputs.

  Every stage the methods train needs a batch that fits each run's training examples (the
  last partial batch of an epoch is dropped) and splits evenly over the devices; every
  modality's stage-0 model is built and its shapes traced (no compilation) on one example
  (of the first run: the runs share the dataset), so an encoder's ``kwargs`` that do not
  suit the inputs fail here, not in its stage.

  Args:
    contexts: the runs (see :func:`mtpkd_jax.comparison.runner.make_context`).

  A batch larger than a run's training split is not an error: the stage trains on batches
  of the whole split (:meth:`mtpkd_jax.methods.context.Context.batch_size`).

  Raises:
    ValueError: naming the config field, on a batch that is not a multiple of the devices or
      a training split smaller than the devices, or an encoder that cannot run on its
      modality's inputs.
  """
  first = contexts[0]
  config = first.config
  planned = graph.plan(config.methods, graph.Roles.of(first))
  stages = {}  # The first stage of each kind: a kind's settings are its stages'.
  for stage in planned:
    stages.setdefault(stage.kind, stage.name)
  for ctx in contexts:
    num_train = len(ctx.split["train"])
    if num_train < ctx.mesh.size:
      raise ValueError(
        f"The {num_train} training examples of {ctx.workdir.name} cannot make one batch over "
        f"the {ctx.mesh.size} devices (stages {sorted(stages.values())} would take no step): "
        "set `config.num_devices`, or a larger `config.label_budget`."
      )
    for kind in stages:
      batch_size = getattr(ctx.settings, kind).batch_size
      if batch_size % ctx.mesh.size:
        raise ValueError(
          f"`config.stages.{kind}.batch_size`={batch_size} must be a multiple of the "
          f"{ctx.mesh.size} devices the batch is split over (set `config.num_devices`)."
        )
  for modality in (stage.subject for stage in planned if stage.kind == "unimodal"):
    model = unimodal.unimodal_model(first, modality)
    try:
      jax.eval_shape(
        model.init,
        first.stage_rng(f"unimodal_{modality}"),
        first.first(first.inputs(modality), modality),
      )
    except Exception as error:  # noqa: BLE001  (whatever the module raises, named below)
      raise ValueError(
        f"The encoder of modality {modality!r} ({first.encoder_spec(modality).to_dict()}) "
        f"cannot run on its inputs {first.schema.modality(modality)}: "
        f"{type(error).__name__}: {str(error).rstrip('.')}. "
        f"Change `config.encoders.{modality}` (or `config.encoders_by_kind."
        f"{first.schema.modality(modality).kind}`)."
      ) from None


def _field_paths(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  paths = []
  for key in config:
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict):
      paths += _field_paths(value, f"{prefix}{key}.")
    else:
      paths.append(f"{prefix}{key}")
  return paths


def unknown_field(config: ml_collections.ConfigDict, path: str) -> str | None:
  """Why ``--config.<path>`` names no field of ``config``, or ``None`` if it names one.

  The message lists the fields where the path leaves the config and the fields whose names
  are closest (``epochs`` -> ``stages.unimodal.epochs``, ...).

  Args:
    config: the experiment config the override applies to.
    path: the override's dotted field path, e.g. ``"stages.unimodal.epochs"``.
  """
  node, keys = config, path.split(".")
  for depth, key in enumerate(keys):
    if not isinstance(node, ml_collections.ConfigDict):
      parent = ".".join(keys[:depth])
      return (
        f"--config.{path}: `config.{parent}` is a value ({node!r}), not a group of fields; "
        f"set it as a whole, e.g. --config.{parent}=..."
      )
    if key not in node:
      where = f"`config.{'.'.join(keys[:depth])}`" if depth else "the config"
      paths = _field_paths(config)
      close = [p for p in paths if p.rsplit(".", 1)[-1] == key]
      close += [p for p in difflib.get_close_matches(path, paths, n=3) if p not in close]
      hint = f" Did you mean {', '.join(f'--config.{p}' for p in close)}?" if close else ""
      return f"--config.{path}: {where} has no field {key!r}; its fields are {sorted(node)}.{hint}"
    node = node[key]
  return None
