"""MT-PKDOT's stages, each trained with :func:`mtpkd_jax.train.loop.fit`.

``unimodal_<m>`` (stage 0) -> ``joint`` (stage 1: fusion + T-Nets) -> ``alignment``
(stage 2, MT-PKDOT only) -> ``student_<method>`` (stage 3). Every stage saves its output
under ``<workdir>/<stage>/output`` and **loads its predecessors from there**, never from
memory: a stage whose predecessor was not saved stops with ``FileNotFoundError``.

By default the backbones are frozen from stage 1 on (the research release's default), so the
later stages run on the backbones' cached tokens (:func:`encode`). Config switches fine-tune
them instead: ``stages.joint.finetune_backbones`` trains every backbone with the joint
teacher (the teachers' tokens then come from the joint stage's backbones), and
``stages.student.finetune_visual`` trains the visual backbone with each student, starting
from the teachers' visual backbone; each has its own ``backbone_learning_rate``. A student's
batches carry the frozen teachers' per-sample targets, and frozen networks (the T-Nets) enter
the step as its ``frozen`` input, never trained nor saved with the student. At test time a
student sees the visual modality alone (:func:`student_predictor`).

Data come as tables (:mod:`mtpkd_jax.data.table`) read a batch at a time; modalities and the
targets ``y`` are named by the dataset's schema, never here. Each stage records what it was
built from and is retrained when that changes (:mod:`mtpkd_jax.train.provenance`).
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mtpkd_jax import models
from mtpkd_jax.data import pipeline
from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data import table as table_lib
from mtpkd_jax.losses import distill
from mtpkd_jax.losses import task as task_lib
from mtpkd_jax.methods import evaluation, networks, registry
from mtpkd_jax.train import checkpoint, loop, parallel, provenance, step, writers
from mtpkd_jax.train.state import create_train_state

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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
    cache: tokens and teacher targets computed from saved stage outputs, reused by the
      run's later stages.
  """

  config: ml_collections.ConfigDict
  schema: schema_lib.Schema
  dataset: pipeline.Dataset | None
  split: Mapping[str, np.ndarray]
  workdir: Path
  seed: int
  mesh: jax.sharding.Mesh
  cache: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

  @property
  def modalities(self) -> tuple[str, ...]:
    """The visual modality first, then the privileged ones."""
    return (self.config.visual, *self.config.privileged)

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


def _stage_rng(ctx: Context, stage: str) -> jax.Array:
  return jax.random.fold_in(jax.random.PRNGKey(ctx.seed), zlib.crc32(stage.encode()))


def _variables(params, batch_stats) -> dict:
  return {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}


def _apply_train(model, params, batch_stats, rng, *args):
  """``model.apply`` in train mode; returns ``(outputs, new_batch_stats)``."""
  variables = _variables(params, batch_stats)
  if not batch_stats:
    return model.apply(variables, *args, train=True, rngs={"dropout": rng}), batch_stats
  out, updates = model.apply(
    variables, *args, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
  )
  return out, updates["batch_stats"]


def _task_loss(ctx: Context, outputs, batch):
  """The task loss on the global batch (``1 - CCC`` is a statistic of the batch)."""
  targets = {task_lib.TARGET_KEY: batch[task_lib.TARGET_KEY]}
  return task_lib.task_loss(*parallel.all_gather_batch((outputs, targets)), ctx.task)


def _sub_variables(variables, name: str) -> dict:
  """The variables of submodule ``name``, in every collection that has it."""
  return {col: tree[name] for col, tree in variables.items() if name in tree}


def _graft(variables, name: str, sub) -> dict:
  """``variables`` with submodule ``name`` replaced by ``sub`` (in ``sub``'s collections)."""
  out = {col: dict(tree) for col, tree in variables.items()}
  for col, tree in sub.items():
    out.setdefault(col, {})[name] = tree
  return out


def _adam(params, learning_rate: float, **special: float):
  """Adam at ``learning_rate``, and at ``special[k]`` for the top-level parameters ``k``."""
  if not special:
    return optax.adam(learning_rate)
  return optax.multi_transform(
    {"default": optax.adam(learning_rate), **{k: optax.adam(lr) for k, lr in special.items()}},
    {k: k if k in special else "default" for k in params},
  )


def encoder_spec(ctx: Context, modality: str) -> ml_collections.ConfigDict:
  """``config.encoders[modality]``, else the default of the modality's kind.

  Raises:
    ValueError: naming both config fields, if neither gives an encoder.
  """
  if modality in ctx.config.encoders:
    return ctx.config.encoders[modality]
  kind = ctx.schema.modality(modality).kind
  by_kind = ctx.config.get("encoders_by_kind") or {}
  if kind not in by_kind:
    raise ValueError(
      f"No encoder for modality {modality!r} of kind {kind!r}: set "
      f"`config.encoders.{modality}` or `config.encoders_by_kind.{kind}`."
    )
  return by_kind[kind]


def _encoder(ctx: Context, modality: str):
  spec = encoder_spec(ctx, modality)
  kwargs = {
    "features": ctx.config.embed_dim,
    "dtype": _DTYPES[ctx.config.compute_dtype],
    **spec.kwargs.to_dict(),
  }
  encoder = models.get_encoder(spec.name, **kwargs)
  if "bn_axis_name" in {f.name for f in dataclasses.fields(encoder)}:
    # Batch statistics are averaged over the data-parallel devices in training.
    encoder = encoder.clone(bn_axis_name=parallel.DATA_AXIS)
  return encoder


def _predecessors(ctx: Context, stage: str) -> list[str]:
  """The stages whose saved outputs ``stage`` is built from."""
  if stage.startswith("unimodal_"):
    return []
  backbones = [f"unimodal_{m}" for m in ctx.modalities]
  if stage == "joint":
    return backbones
  if stage == "alignment":
    return [*backbones, "joint"]
  method = registry.get_method(stage.removeprefix("student_"))
  return [*backbones, "joint", *(["alignment"] if method.teacher == "aligned" else [])]


def _provenance(ctx: Context, stage: str) -> dict:
  """What ``stage`` is built from (see :mod:`mtpkd_jax.train.provenance`)."""
  config = ctx.config
  kind, _, name = stage.partition("_")
  section = {
    "stage": config.stages[kind].to_dict(),
    "model": {
      "embed_dim": config.embed_dim,
      "compute_dtype": config.compute_dtype,
      "dropout_rate": config.dropout_rate,
    },
  }
  if kind == "unimodal":
    section["encoder"] = encoder_spec(ctx, name).to_dict()
  else:
    section["model"] |= {"visual": config.visual, "privileged": list(config.privileged)}
    section["encoders"] = {m: encoder_spec(ctx, m).to_dict() for m in ctx.modalities}
  if kind == "student":
    section["method"] = registry.method_params(config, name).to_dict()
  return {
    "config": section,
    "predecessors": {
      p: provenance.output_fingerprint(ctx.workdir, p, required_by=stage)
      for p in _predecessors(ctx, stage)
    },
    "dataset": ctx.dataset.fingerprint,
    "split": provenance.split_digest(ctx.split),
    "seed": ctx.seed,
  }


def _fit(
  ctx, stage, model, variables, loss_fn, table, cfg, eval_fn, *, frozen=None, tx=None, parts=None
):
  """Trains one stage on ``table`` (indexed by the train split) and returns its output.

  A stage whose saved record of what it was built from differs from the current one is
  retrained from scratch (:func:`mtpkd_jax.train.provenance.ensure`). ``tx`` defaults to Adam
  at ``cfg.learning_rate``. The output is selected on the validation ``score``, except the
  modules of ``parts`` (:class:`mtpkd_jax.train.loop.PartSelection`).
  """
  provenance.ensure(ctx.workdir, stage, _provenance(ctx, stage))
  train_idx = ctx.split["train"]
  epoch_steps = pipeline.steps_per_epoch(len(train_idx), cfg.batch_size, drop_remainder=True)
  dataset = pipeline.batch_dataset(
    table,
    train_idx,
    batch_size=cfg.batch_size,
    seed=ctx.seed,
    drop_remainder=True,
    num_epochs=None,
    num_shards=jax.process_count(),
    shard_index=jax.process_index(),
  )
  state = create_train_state(model.apply, variables, tx or optax.adam(cfg.learning_rate))
  logdir = checkpoint.stage_dir(ctx.workdir, stage) / "logs"
  with writers.MetricWriter(logdir) as writer:
    loop.fit(
      state,
      step.make_train_step(loss_fn),
      stage=stage,
      workdir=ctx.workdir,
      mesh=ctx.mesh,
      batch_for_step=dataset.__getitem__,
      num_steps=cfg.epochs * epoch_steps,
      rng=_stage_rng(ctx, stage),
      frozen=frozen,
      eval_fn=eval_fn,
      eval_every=epoch_steps,
      best_metric="score",
      best_mode="max",
      parts=parts,
      checkpoint_every=ctx.config.checkpoint_every,
      keep_checkpoints=ctx.config.keep_checkpoints,
      log_every=epoch_steps,
      writer=writer,
    )
  variables, _ = checkpoint.load_stage_output(ctx.workdir, stage)
  return variables


def _selection_fn(ctx, predict_fn, table, batch_size):
  """``eval_fn(params, batch_stats)`` scoring ``predict_fn`` on the validation split."""
  val = ctx.split["val"]
  targets = ctx.dataset.y[val]

  def eval_fn(params, batch_stats):
    variables = _variables(params, batch_stats)
    outputs = evaluation.predict(predict_fn, variables, table, batch_size, val)
    return evaluation.scores(outputs, targets, ctx.schema.task)

  return eval_fn


# Stage 0: one backbone per modality.
def unimodal_model(ctx: Context, modality: str) -> networks.Unimodal:
  return networks.Unimodal(_encoder(ctx, modality), ctx.num_outputs)


def train_unimodal(ctx: Context, modality: str) -> dict:
  """Stage 0: encoder + head of ``modality`` trained on the task alone."""
  stage = f"unimodal_{modality}"
  cfg = ctx.config.stages.unimodal
  model = unimodal_model(ctx, modality)
  inputs = ctx.inputs(modality)
  variables = model.init(_stage_rng(ctx, stage), ctx.first(inputs, modality))

  def loss_fn(params, batch_stats, batch, rng, frozen):
    del frozen
    x = ctx.model_input(batch, modality)
    (outputs, _), batch_stats = _apply_train(model, params, batch_stats, rng, x)
    return _task_loss(ctx, outputs, batch), ({}, batch_stats)

  predict_fn = jax.jit(lambda v, b: model.apply(v, ctx.model_input(b, modality))[0])
  eval_fn = _selection_fn(ctx, predict_fn, inputs, cfg.batch_size)
  table = table_lib.join(inputs, ctx.targets())
  return _fit(ctx, stage, model, variables, loss_fn, table, cfg, eval_fn)


def _stage0_backbone(ctx: Context, modality: str, required_by: str) -> dict:
  variables, _ = checkpoint.load_stage_output(
    ctx.workdir, f"unimodal_{modality}", required_by=required_by
  )
  return _sub_variables(variables, "encoder")


def teacher_backbone(ctx: Context, modality: str, required_by: str) -> dict:
  """Variables of the teachers' backbone of ``modality``, loaded from disk.

  Stage 0's backbone, or the joint stage's copy when ``stages.joint.finetune_backbones``.
  """
  if not ctx.config.stages.joint.finetune_backbones:
    return _stage0_backbone(ctx, modality, required_by)
  variables, _ = checkpoint.load_stage_output(ctx.workdir, "joint", required_by=required_by)
  return _sub_variables(variables, f"encoders_{ctx.modalities.index(modality)}")


def encode(ctx: Context, modality: str, required_by: str) -> np.ndarray:
  """Tokens ``[N, L, d]`` of every example from the teachers' saved backbone of ``modality``.

  The inputs are read and encoded ``eval_batch_size`` examples at a time.
  """
  variables = teacher_backbone(ctx, modality, required_by)
  encoder = _encoder(ctx, modality)
  fn = jax.jit(
    lambda v, b: encoder.apply(v, ctx.model_input(b, modality), method=networks.call_encoder)
  )
  return evaluation.predict(fn, variables, ctx.inputs(modality), ctx.config.eval_batch_size)


def backbone_tokens(ctx: Context, required_by: str) -> dict[str, np.ndarray]:
  """Every modality's tokens of every example from the teachers' (frozen) backbones."""
  for m in ctx.modalities:
    if ("tokens", m) not in ctx.cache:
      ctx.cache["tokens", m] = encode(ctx, m, required_by)
  return {m: ctx.cache["tokens", m] for m in ctx.modalities}


def _token_table(ctx: Context, required_by: str) -> table_lib.ArrayTable:
  return table_lib.ArrayTable(backbone_tokens(ctx, required_by))


# Stage 1: the joint teacher and the T-Nets.
def joint_model(ctx: Context) -> networks.JointTeacher:
  cfg = ctx.config.stages.joint
  encoders = [_encoder(ctx, m) for m in ctx.modalities] if cfg.finetune_backbones else []
  return networks.JointTeacher(
    ctx.num_outputs,
    len(ctx.config.privileged),
    tnet_hidden=tuple(cfg.tnet_hidden),
    dropout_rate=ctx.config.dropout_rate,
    modality_dropout=cfg.modality_dropout,
    encoders=tuple(encoders),
  )


def _joint_inputs(ctx: Context, required_by: str) -> table_lib.Table:
  """What the joint model reads: raw inputs if it fine-tunes the backbones, else tokens."""
  if ctx.config.stages.joint.finetune_backbones:
    return table_lib.join(*(ctx.inputs(m) for m in ctx.modalities))
  return _token_table(ctx, required_by)


def _joint_args(ctx: Context, batch) -> list:
  """The joint model's per-modality inputs, from a batch of ``_joint_inputs``."""
  if ctx.config.stages.joint.finetune_backbones:
    return [ctx.model_input(batch, m) for m in ctx.modalities]
  return [batch[m] for m in ctx.modalities]


def train_joint(ctx: Context) -> dict:
  """Stage 1: fusion ``F_J`` on the task and the T-Nets ``H_m: f_v -> f_m``.

  With ``finetune_backbones`` the stage-0 backbones are loaded into the joint model and
  trained with it at ``backbone_learning_rate``.
  """
  cfg = ctx.config.stages.joint
  mods = ctx.modalities
  inputs = _joint_inputs(ctx, required_by="joint")
  model = joint_model(ctx)
  variables = model.init(_stage_rng(ctx, "joint"), _joint_args(ctx, inputs.take([0])))
  tx = None
  if cfg.finetune_backbones:
    for i, m in enumerate(mods):
      backbone = _stage0_backbone(ctx, m, required_by="joint")
      variables = _graft(variables, f"encoders_{i}", backbone)
    rates = {f"encoders_{i}": cfg.backbone_learning_rate for i in range(len(mods))}
    tx = _adam(variables["params"], cfg.learning_rate, **rates)

  def loss_fn(params, batch_stats, batch, rng, frozen):
    del frozen
    (outputs, _, hallucinated, tokens), batch_stats = _apply_train(
      model, params, batch_stats, rng, _joint_args(ctx, batch)
    )
    task_value = _task_loss(ctx, outputs, batch)
    pairs = parallel.all_gather_batch(_tnet_pairs(hallucinated, tokens))
    tnet = _tnet_loss(*pairs, cfg.tnet_loss)
    loss = task_value + cfg.tnet_weight * tnet
    return loss, ({"task": task_value, "tnet": tnet}, batch_stats)

  table = table_lib.join(inputs, ctx.targets())
  parts = {"tnets": loop.PartSelection(_tnet_modules(ctx), metric="tnet_loss", mode="min")}
  return _fit(
    ctx,
    "joint",
    model,
    variables,
    loss_fn,
    table,
    cfg,
    _joint_eval_fn(ctx, model, inputs),
    tx=tx,
    parts=parts,
  )


def _tnet_modules(ctx: Context) -> tuple[str, ...]:
  return tuple(f"tnet{i}" for i in range(len(ctx.config.privileged)))


def _tnet_pairs(hallucinated, tokens):
  """``(H_m(f_v), pool(f_m))`` of every privileged modality ``m``, both ``[B, P, d]``."""
  return hallucinated.swapaxes(0, 1), jnp.stack([t.mean(1) for t in tokens[1:]], axis=1)


def _tnet_loss(hallucinated, real, kind: str):
  """The T-Nets' loss, summed over the privileged modalities; both ``[B, P, d]``."""
  return sum(
    distill.hallucination_loss(hallucinated[:, i], real[:, i], kind=kind)
    for i in range(real.shape[1])
  )


def _joint_eval_fn(ctx: Context, model, inputs: table_lib.Table):
  """The joint teacher's validation scores, plus ``tnet_loss``: the T-Nets' own loss.

  ``tnet_loss`` is the training loss of the T-Nets averaged over consecutive validation
  batches of (about) the training batch size, so that a batch statistic such as the MMD is
  measured at the scale it is trained at.
  """
  cfg = ctx.config.stages.joint
  val = ctx.split["val"]
  targets = ctx.dataset.y[val]

  @jax.jit
  def predict_fn(variables, batch):
    outputs, _, hallucinated, tokens = model.apply(variables, _joint_args(ctx, batch))
    return outputs, *_tnet_pairs(hallucinated, tokens)

  tnet_loss = jax.jit(functools.partial(_tnet_loss, kind=cfg.tnet_loss))

  def eval_fn(params, batch_stats):
    variables = _variables(params, batch_stats)
    outputs, hallucinated, real = evaluation.predict(
      predict_fn, variables, inputs, ctx.config.eval_batch_size, val
    )
    values = evaluation.scores(outputs, targets, ctx.schema.task)
    chunks = np.array_split(np.arange(len(val)), max(1, len(val) // cfg.batch_size))
    losses = [tnet_loss(hallucinated[c], real[c]) for c in chunks]
    values["tnet_loss"] = float(np.average(losses, weights=[len(c) for c in chunks]))
    return values

  return eval_fn


# Stage 2: MT-PKDOT's self-distillation alignment.
def alignment_model(ctx: Context) -> networks.Alignment:
  return networks.Alignment(
    ctx.num_outputs, len(ctx.modalities), dropout_rate=ctx.config.dropout_rate
  )


def train_alignment(ctx: Context) -> dict:
  """Stage 2: adapters and heads per modality, mutually aligned with the joint ``z_J``.

  ``L_SD = ½ Σ_m mean(1 - cos(a_m, z_J)) + ½ (L_task(joint) + Σ_m L_task(h_m(a_m)) / M)``;
  ``z_J`` is not stopped: the joint fusion, loaded from stage 1, trains with its own
  learning rate.
  """
  cfg = ctx.config.stages.alignment
  joint, _ = checkpoint.load_stage_output(ctx.workdir, "joint", required_by="alignment")
  tokens = _token_table(ctx, required_by="alignment")
  model = alignment_model(ctx)
  mods = ctx.modalities
  first = tokens.take([0])
  variables = model.init(_stage_rng(ctx, "alignment"), [first[m] for m in mods])
  params = dict(variables["params"])
  params["fusion"] = joint["params"]["fusion"]
  tx = _adam(params, cfg.learning_rate, fusion=cfg.fusion_learning_rate)

  def loss_fn(params, batch_stats, batch, rng, frozen):
    del frozen
    (outputs, z, adapted, head_outputs), batch_stats = _apply_train(
      model, params, batch_stats, rng, [batch[m] for m in mods]
    )
    align = sum(
      distill.cosine_distance(adapted[i], z, stop_teacher_gradient=False) for i in range(len(mods))
    )
    joint_task = _task_loss(ctx, outputs, batch)
    heads = sum(_task_loss(ctx, head_outputs[i], batch) for i in range(len(mods))) / len(mods)
    loss = 0.5 * align + 0.5 * (joint_task + heads)
    return loss, ({"align": align, "task": joint_task, "heads": heads}, batch_stats)

  predict_fn = jax.jit(lambda v, b: model.apply(v, [b[m] for m in mods])[0])
  eval_fn = _selection_fn(ctx, predict_fn, tokens, ctx.config.eval_batch_size)
  table = table_lib.join(tokens, ctx.targets())
  return _fit(ctx, "alignment", model, {"params": params}, loss_fn, table, cfg, eval_fn, tx=tx)


def teacher_targets(ctx: Context, source: str, required_by: str) -> dict[str, np.ndarray]:
  """Per-sample teacher embeddings ``[N, T, d]`` and outputs ``[N, T, C]``.

  ``joint``: stage 1's ``z_J`` (``T = 1``). ``aligned``: stage 2's adapted embedding of
  every modality, then its ``z_J`` (``T = M + 1``; the joint is last). Computed for every
  example from the saved stage outputs, once per run.
  """
  if ("targets", source) not in ctx.cache:
    ctx.cache["targets", source] = _teacher_targets(ctx, source, required_by)
  return ctx.cache["targets", source]


def _teacher_targets(ctx: Context, source: str, required_by: str) -> dict[str, np.ndarray]:
  batch_size = ctx.config.eval_batch_size
  if source == "joint":
    variables, _ = checkpoint.load_stage_output(ctx.workdir, "joint", required_by=required_by)
    model = joint_model(ctx)
    fn = jax.jit(lambda v, b: jnp.concatenate(model.apply(v, _joint_args(ctx, b))[1::-1], axis=-1))
    both = evaluation.predict(fn, variables, _joint_inputs(ctx, required_by), batch_size)
    z, out = both[:, : -ctx.num_outputs], both[:, -ctx.num_outputs :]
    return {"teacher_z": z[:, None], "teacher_out": out[:, None]}
  variables, _ = checkpoint.load_stage_output(ctx.workdir, "alignment", required_by=required_by)
  tokens = _token_table(ctx, required_by)
  model = alignment_model(ctx)

  def candidates(v, b):
    outputs, z, adapted, head_outputs = model.apply(v, [b[m] for m in ctx.modalities])
    zs = jnp.concatenate([adapted, z[None]], axis=0)
    outs = jnp.concatenate([head_outputs, outputs[None]], axis=0)
    return jnp.concatenate([zs, outs], axis=-1).swapaxes(0, 1)

  both = evaluation.predict(jax.jit(candidates), variables, tokens, batch_size)
  return {"teacher_z": both[..., : -ctx.num_outputs], "teacher_out": both[..., -ctx.num_outputs :]}


# Stage 3: the students.
def student_model(ctx: Context) -> networks.Student:
  encoder = None
  if ctx.config.stages.student.finetune_visual:
    encoder = _encoder(ctx, ctx.config.visual)
  return networks.Student(ctx.num_outputs, dropout_rate=ctx.config.dropout_rate, encoder=encoder)


def _hallucinate(ctx: Context, joint_params, visual_tokens):
  return joint_model(ctx).apply(
    {"params": joint_params}, visual_tokens, method=networks.JointTeacher.hallucinate
  )


def _student_keys(ctx: Context) -> tuple[str, ...]:
  """The columns a student's input is read from: the visual tokens, or its raw input."""
  if ctx.config.stages.student.finetune_visual:
    return ctx.schema.input_keys(ctx.config.visual)
  return (ctx.config.visual,)


def _student_arg(ctx: Context, batch):
  if ctx.config.stages.student.finetune_visual:
    return ctx.model_input(batch, ctx.config.visual)
  return batch[ctx.config.visual]


def student_loss(ctx: Context, method_name: str, model: networks.Student):
  """The per-device student loss ``(params, batch_stats, batch, rng, frozen_joint_params)``.

  The distillation terms compare samples with each other (similarity matrices, transport,
  relations, routing) and ``1 - CCC`` is a statistic of the batch, so every term sees the
  global batch: the student's embeddings and outputs and the batch's targets are
  all-gathered over the ``data`` axis first (:func:`parallel.all_gather_batch`). Every
  device then computes the same global-batch loss, and averaging the gradients over
  devices gives exactly the single-device gradient.
  """
  method = registry.get_method(method_name)
  method_cfg = registry.method_params(ctx.config, method_name)
  input_keys = _student_keys(ctx)

  def loss_fn(params, batch_stats, batch, rng, frozen):
    hallucinate = functools.partial(_hallucinate, ctx, frozen)
    (outputs, z_s), batch_stats = _apply_train(
      model, params, batch_stats, rng, _student_arg(ctx, batch), hallucinate
    )
    targets = {k: v for k, v in batch.items() if k not in input_keys}
    z_all, outputs_all, targets_all = parallel.all_gather_batch((z_s, outputs, targets))
    task_value = task_lib.task_loss(outputs_all, targets_all, ctx.task)
    loss, metrics = method.distill(
      method_cfg, task_value, z_all, outputs_all, targets_all, ctx.task
    )
    return loss, ({"task": task_value, **metrics}, batch_stats)

  return loss_fn


def train_student(ctx: Context, method_name: str) -> dict:
  """Stage 3: the student of ``method_name`` with the frozen T-Nets.

  Its batches hold the visual input (the frozen visual backbone's tokens, or the raw input
  when ``finetune_visual`` trains the backbone with the student), the teachers' per-sample
  targets (:func:`teacher_targets`) and the labels: no privileged input.
  """
  stage = f"student_{method_name}"
  cfg = ctx.config.stages.student
  visual = ctx.config.visual
  joint, _ = checkpoint.load_stage_output(ctx.workdir, "joint", required_by=stage)
  targets = teacher_targets(ctx, registry.get_method(method_name).teacher, required_by=stage)
  if cfg.finetune_visual:
    inputs = ctx.inputs(visual)
  else:
    inputs = table_lib.ArrayTable({visual: backbone_tokens(ctx, required_by=stage)[visual]})
  model = student_model(ctx)
  hallucinate = functools.partial(_hallucinate, ctx, joint["params"])
  variables = model.init(_stage_rng(ctx, stage), _student_arg(ctx, inputs.take([0])), hallucinate)
  tx = None
  if cfg.finetune_visual:
    backbone = teacher_backbone(ctx, visual, required_by=stage)
    variables = _graft(variables, "encoder", backbone)
    tx = _adam(variables["params"], cfg.learning_rate, encoder=cfg.backbone_learning_rate)

  loss_fn = student_loss(ctx, method_name, model)
  predict_fn = jax.jit(lambda v, b: model.apply(v, _student_arg(ctx, b), hallucinate)[0])
  eval_fn = _selection_fn(ctx, predict_fn, inputs, ctx.config.eval_batch_size)
  table = table_lib.join(inputs, table_lib.ArrayTable(targets), ctx.targets())
  return _fit(
    ctx, stage, model, variables, loss_fn, table, cfg, eval_fn, frozen=joint["params"], tx=tx
  )


def student_predictor(ctx: Context, method_name: str):
  """The test-time path ``visual input -> E_v -> H -> F_S``.

  Returns ``fn(table, indices=None) -> (outputs [n, C], z_S [n, d])``, which reads the visual
  modality's columns of ``table`` alone (``schema.input_keys(visual)``): no privileged input
  can reach a student's prediction.
  """
  stage = f"student_{method_name}"
  visual = ctx.config.visual
  backbone = None  # A fine-tuned visual backbone is part of the student.
  if not ctx.config.stages.student.finetune_visual:
    backbone = teacher_backbone(ctx, visual, required_by=stage)
  joint, _ = checkpoint.load_stage_output(ctx.workdir, "joint", required_by=stage)
  student, _ = checkpoint.load_stage_output(ctx.workdir, stage)
  encoder, model = _encoder(ctx, visual), student_model(ctx)

  @jax.jit
  def fn(variables, batch):
    backbone, joint_params, student = variables
    x = ctx.model_input(batch, visual)
    if backbone is not None:
      x = encoder.apply(backbone, x, method=networks.call_encoder)
    outputs, z = model.apply(student, x, functools.partial(_hallucinate, ctx, joint_params))
    return jnp.concatenate([outputs, z], axis=-1)

  variables = (backbone, joint["params"], student)
  keys = ctx.schema.input_keys(visual)

  def predictor(table: table_lib.Table, indices: np.ndarray | None = None):
    inputs = table.select(keys)
    both = evaluation.predict(fn, variables, inputs, ctx.config.eval_batch_size, indices)
    return both[:, : ctx.num_outputs], both[:, ctx.num_outputs :]

  return predictor


def unimodal_predictor(ctx: Context, modality: str):
  """``fn(table, indices=None) -> outputs [n, C]`` of the saved stage-0 model of ``modality``."""
  variables, _ = checkpoint.load_stage_output(ctx.workdir, f"unimodal_{modality}")
  model = unimodal_model(ctx, modality)
  fn = jax.jit(lambda v, b: model.apply(v, ctx.model_input(b, modality))[0])
  keys = ctx.schema.input_keys(modality)

  def predictor(table: table_lib.Table, indices: np.ndarray | None = None):
    return evaluation.predict(
      fn, variables, table.select(keys), ctx.config.eval_batch_size, indices
    )

  return predictor


@dataclasses.dataclass(frozen=True)
class Plan:
  """The shared stages some methods need: backbones to train, joint teacher, alignment."""

  unimodal: tuple[str, ...]
  joint: bool
  alignment: bool


def plan(method_names: Sequence[str], modalities: Sequence[str]) -> Plan:
  """Which shared stages ``method_names`` need; ``modalities`` lists visual first."""
  methods = [registry.get_method(name, modalities[0]) for name in method_names]
  joint = any(m.kind != "unimodal" for m in methods)
  unimodal = [m.modality for m in methods if m.kind == "unimodal"]
  if joint:
    unimodal = [*modalities, *unimodal]
  return Plan(
    unimodal=tuple(dict.fromkeys(unimodal)),
    joint=joint,
    alignment=any(m.teacher == "aligned" for m in methods),
  )
