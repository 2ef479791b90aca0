"""The run context every stage of every method shares, the run's memo, and a planned stage.

A :class:`Context` is one run (one fold, one seed): the config, the dataset and its schema,
the split, the run's directory, the seed and the device mesh, with what the stages derive
from them: the typed stage settings and method parameters, a modality's inputs and encoder,
a stage's key, its provenance record, its validation, and :meth:`Context.fit`, which trains
a :class:`Stage` with :func:`mtpkd_jax.train.stage.fit`.

The context is immutable. Values computed from the run's saved stage outputs and reused by
its later stages (the backbones' tokens, the teachers' targets) live in a :class:`Memo`, one
per run, that the stages which read them take as an argument beside the context: what is
cached, and when, is explicit in their ``memo.get(key, compute)`` calls.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from mtpkd_jax import models
from mtpkd_jax.data import pipeline
from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data import table as table_lib
from mtpkd_jax.methods import evaluation, registry
from mtpkd_jax.methods import params as params_lib
from mtpkd_jax.methods import settings as settings_lib
from mtpkd_jax.train import loop, parallel, provenance
from mtpkd_jax.train import stage as stage_lib
from mtpkd_jax.train import variables as variables_lib

# The encoders' compute dtypes by the name `config.compute_dtype` gives.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def encoder_from_spec(spec: ml_collections.ConfigDict, config: ml_collections.ConfigDict):
  """The encoder ``spec`` names, at the config's width and dtype unless its ``kwargs`` say.

  Raises:
    TypeError: if the encoder does not take the spec's ``kwargs``.
    ValueError: if no encoder of that name is registered.
  """
  kwargs = spec.get("kwargs")
  return models.get_encoder(
    spec.name,
    **{
      "features": config.embed_dim,
      "dtype": DTYPES[config.compute_dtype],
      **(kwargs.to_dict() if kwargs else {}),
    },
  )


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a run, as the stage graph plans it (:mod:`mtpkd_jax.methods.graph`).

  Attributes:
    kind: its kind in the graph, which names its settings (``config.stages.<kind>``).
    subject: the modality (``unimodal``) or method (``student``, ``cmkt``) it trains;
      ``None`` for a stage of which a run has one (``joint``, ``alignment``).
    needs: the stages whose saved outputs it is built from.
  """

  kind: str
  subject: str | None = None
  needs: tuple[str, ...] = ()

  @property
  def name(self) -> str:
    """``<kind>_<subject>``, or ``<kind>``: the stage's folder in the run's directory."""
    return self.kind if self.subject is None else f"{self.kind}_{self.subject}"


class Memo:
  """Values computed once per run, by key: ``get(key, compute)`` calls ``compute()`` once.

  Args:
    values: values known beforehand, by key (e.g. teacher targets computed elsewhere).
  """

  def __init__(self, values: Mapping[Hashable, Any] | None = None):
    self._values: dict[Hashable, Any] = dict(values or {})

  def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
    """The value of ``key``, computed by ``compute()`` the first time it is asked for."""
    if key not in self._values:
      self._values[key] = compute()
    return self._values[key]


@dataclasses.dataclass(frozen=True)
class Context:
  """What every stage of one run (one fold, one seed) shares.

  Attributes:
    config: the experiment config (see ``experiments/configs``).
    schema: the dataset's schema: modalities by name, the task.
    dataset: the opened dataset (``None`` when a finished run only predicts).
    split: example indices of ``train``, ``val`` and ``test``.
    workdir: the run's directory; stage ``s`` lives in ``workdir / s``.
    seed: the run's seed.
    mesh: the 1-D ``("data",)`` device mesh.
  """

  config: ml_collections.ConfigDict
  schema: schema_lib.Schema
  dataset: pipeline.Dataset | None
  split: Mapping[str, np.ndarray]
  workdir: Path
  seed: int
  mesh: jax.sharding.Mesh

  @functools.cached_property
  def settings(self) -> settings_lib.Stages:
    """Every stage kind's typed settings (``config.stages``, read once)."""
    return settings_lib.stages_from_config(self.config)

  def batch_size(self, kind: str) -> int:
    """The batch of a stage of ``kind``: its setting, or the whole training split if smaller.

    A split smaller than the setting (a small dataset, a label budget) gives one batch of
    every training example an epoch, rounded down to a multiple of the devices.
    """
    num_train = len(self.split["train"])
    return min(getattr(self.settings, kind).batch_size, num_train - num_train % self.mesh.size)

  def unlabelled_batch_size(self, kind: str) -> int:
    """The unlabelled rows that follow a batch of ``kind``, for students that see them.

    As many as :meth:`batch_size`'s setting, or every training example ``config.label_budget``
    leaves unlabelled if fewer, rounded down to a multiple of the devices; 0 without them.
    """
    num = len(self.split.get("unlabelled", ()))
    return min(getattr(self.settings, kind).batch_size, num - num % self.mesh.size)

  def method_params(self, name: str) -> params_lib.Params:
    """The typed parameters of method or variant ``name`` (:func:`registry.method_params`)."""
    return registry.method_params(self.config, name)

  @property
  def modalities(self) -> tuple[str, ...]:
    """The visual modality first, then the privileged ones."""
    return (self.config.visual, *self.config.privileged)

  @property
  def strong(self) -> str | None:
    """CMKT's strong modality: ``config.strong``, else the first privileged one."""
    return self.config.get("strong") or next(iter(self.config.privileged), None)

  @property
  def task(self) -> str:
    """``classification | regression``."""
    return self.schema.task.kind

  @property
  def num_outputs(self) -> int:
    """Classes, or regression targets."""
    return self.schema.task.num_outputs

  def targets(self) -> table_lib.ArrayTable:
    """The targets ``y`` of every example, as a table."""
    return table_lib.ArrayTable({"y": self.dataset.y})

  def inputs(self, modality: str) -> table_lib.Table:
    """The raw inputs of ``modality`` (with its mask) of every example."""
    return self.dataset.table.select(self.schema.input_keys(modality))

  def model_input(self, batch: Mapping[str, Any], modality: str):
    """What a model of ``modality`` takes from ``batch``: the array, or ``{x, mask}``."""
    if self.schema.modality(modality).masked:
      return {"x": batch[modality], "mask": batch[schema_lib.mask_key(modality)]}
    return batch[modality]

  def first(self, table: table_lib.Table, modality: str):
    """``model_input`` of the first example: what ``init`` traces shapes with."""
    return self.model_input(table.take([0]), modality)

  def encoder_spec(self, modality: str) -> ml_collections.ConfigDict:
    """``config.encoders[modality]``, else the default of the modality's kind.

    A spec holds the registered encoder's ``name`` and its ``kwargs``, and optionally
    ``pretrained``: an ``.npz`` file of the encoder's variables that stage 0 starts from
    (:func:`mtpkd_jax.methods.unimodal.initial_variables`); empty for random weights.

    Raises:
      ValueError: naming both config fields, if neither gives an encoder.
    """
    if modality in self.config.encoders:
      return self.config.encoders[modality]
    kind = self.schema.modality(modality).kind
    by_kind = self.config.get("encoders_by_kind") or {}
    if kind not in by_kind:
      raise ValueError(
        f"No encoder for modality {modality!r} of kind {kind!r}: set "
        f"`config.encoders.{modality}` or `config.encoders_by_kind.{kind}`."
      )
    return by_kind[kind]

  def encoder(self, modality: str):
    """A new encoder of ``modality`` (:meth:`encoder_spec`), at the config's width and dtype."""
    spec = self.encoder_spec(modality)
    try:
      encoder = encoder_from_spec(spec, self.config)
    except TypeError as error:
      kind = self.schema.modality(modality).kind
      raise ValueError(
        f"Encoder {spec.name!r} of modality {modality!r} cannot be built with the kwargs "
        f"{spec.kwargs.to_dict()} ({error}): set kwargs it takes in `config.encoders.{modality}` "
        f"(or `config.encoders_by_kind.{kind}`)."
      ) from None
    if "bn_axis_name" in {f.name for f in dataclasses.fields(encoder)}:
      # Batch statistics are averaged over the data-parallel devices in training.
      encoder = encoder.clone(bn_axis_name=parallel.DATA_AXIS)
    return encoder

  def stage_rng(self, stage: str) -> jax.Array:
    """The base key of ``stage``: a function of the run's seed and the stage's name."""
    return jax.random.fold_in(jax.random.PRNGKey(self.seed), zlib.crc32(stage.encode()))

  def provenance(self, stage: Stage) -> dict:
    """What ``stage`` is built from (see :mod:`mtpkd_jax.train.provenance`)."""
    config, kind, name = self.config, stage.kind, stage.subject
    section = {
      "stage": dataclasses.asdict(getattr(self.settings, kind)),
      "model": {
        "embed_dim": config.embed_dim,
        "compute_dtype": config.compute_dtype,
        "dropout_rate": config.dropout_rate,
      },
    }
    if kind == "unimodal":
      section["encoder"] = self.encoder_spec(name).to_dict()
      if pretrained := section["encoder"].get("pretrained"):
        # The file's content, not only its name: a file converted again retrains stage 0.
        section["pretrained_digest"] = provenance.file_digest(Path(pretrained).expanduser())
    elif kind == "cmkt":
      section["model"] |= {"weak": config.visual, "strong": self.strong}
      roles = (config.visual, self.strong)
      section["encoders"] = {m: self.encoder_spec(m).to_dict() for m in roles}
    else:
      section["model"] |= {"visual": config.visual, "privileged": list(config.privileged)}
      section["encoders"] = {m: self.encoder_spec(m).to_dict() for m in self.modalities}
    if kind == "joint" and self.settings.joint.finetune_backbones:
      # Fine-tuned joint stages take their T-Nets from the best-score step (methods/joint.py);
      # ones saved before did not, and this key makes them stale.
      section["tnets_from"] = "best_score_step"
    if kind in registry.DISTILLED:
      section["method"] = dataclasses.asdict(self.method_params(name))
    return {
      "config": section,
      "predecessors": {
        p: provenance.output_fingerprint(self.workdir, p, required_by=stage.name)
        for p in stage.needs
      },
      "dataset": self.dataset.fingerprint,
      "split": provenance.split_digest(self.split),
      "seed": self.seed,
    }

  def selection_fn(self, predict_fn, table: table_lib.Table, batch_size: int):
    """``eval_fn(params, batch_stats)`` scoring ``predict_fn`` on the validation split."""
    val = self.split["val"]
    targets = self.dataset.y[val]

    def eval_fn(params, batch_stats):
      values = variables_lib.variables(params, batch_stats)
      outputs = evaluation.predict(predict_fn, values, table, batch_size, val)
      return evaluation.scores(outputs, targets, self.schema.task, self.config.metrics)

    return eval_fn

  def fit(
    self,
    stage: Stage,
    model,
    variables,
    loss_fn,
    table: table_lib.Table,
    eval_fn,
    *,
    frozen=None,
    tx: optax.GradientTransformation | None = None,
    parts: Mapping[str, loop.PartSelection] | None = None,
    unlabelled: bool = False,
    term_weights: Mapping[str, float] | None = None,
  ) -> dict:
    """Trains ``stage`` on ``table`` (indexed by the train split); returns its output.

    :func:`mtpkd_jax.train.stage.fit` with this run's directory, mesh, seed, the stage's
    key and provenance record, and the epochs, fewest steps and batch size
    (:meth:`batch_size`) of its settings; ``tx`` defaults to Adam at the settings' learning
    rate. With ``unlabelled`` each batch is followed by :meth:`unlabelled_batch_size` of the
    examples ``config.label_budget`` left without a label, if there are any; each step logs
    the gradient norm of every term of ``term_weights``.
    """
    cfg = getattr(self.settings, stage.kind)
    batch_size = self.batch_size(stage.kind)
    if batch_size < cfg.batch_size:
      logging.warning(
        "Stage %s: batches of the whole training split, %d examples (fewer than "
        "`config.stages.%s.batch_size`=%d).",
        stage.name,
        batch_size,
        stage.kind,
        cfg.batch_size,
      )
    extra = self.unlabelled_batch_size(stage.kind) if unlabelled else 0
    run = loop.StageRun(
      stage.name,
      self.workdir,
      self.mesh,
      self.stage_rng(stage.name),
      checkpoint_every=self.config.checkpoint_every,
      keep_checkpoints=self.config.keep_checkpoints,
    )
    return stage_lib.fit(
      run,
      model,
      variables,
      loss_fn,
      table,
      self.split["train"],
      record=self.provenance(stage),
      seed=self.seed,
      epochs=cfg.epochs,
      min_steps=cfg.min_steps,
      batch_size=batch_size,
      tx=tx or optax.adam(cfg.learning_rate),
      eval_fn=eval_fn,
      frozen=frozen,
      parts=parts,
      extra_indices=self.split["unlabelled"] if extra else None,
      extra_batch_size=extra,
      term_weights=term_weights,
    )
