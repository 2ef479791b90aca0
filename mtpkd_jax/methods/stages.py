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
student sees the video alone (:func:`student_predictor`).
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mtpkd_jax import models
from mtpkd_jax.data import pipeline
from mtpkd_jax.losses import distill
from mtpkd_jax.losses import task as task_lib
from mtpkd_jax.methods import evaluation, networks, registry
from mtpkd_jax.train import checkpoint, loop, parallel, step, writers
from mtpkd_jax.train.state import create_train_state

TARGET_KEYS = ("label", "valence", "arousal")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class Context:
  """What every stage of one run (one fold, one seed) shares.

  Attributes:
    config: the experiment config (see ``experiments/configs``).
    data: every example of the dataset, feature name -> ``[N, ...]`` array.
    split: example indices of ``train``, ``val`` and ``test``.
    workdir: the run's directory; stage ``s`` lives in ``workdir / s``.
    seed: the run's seed.
    task: ``classification | regression``.
    num_outputs: classes, or 2 (valence, arousal).
    mesh: the 1-D ``("data",)`` device mesh.
    cache: tokens and teacher targets computed from saved stage outputs, reused by the
      run's later stages.
  """

  config: ml_collections.ConfigDict
  data: Mapping[str, np.ndarray]
  split: Mapping[str, np.ndarray]
  workdir: Path
  seed: int
  task: str
  num_outputs: int
  mesh: jax.sharding.Mesh
  cache: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

  @property
  def modalities(self) -> tuple[str, ...]:
    """The visual modality first, then the privileged ones."""
    return (self.config.visual, *self.config.privileged)

  def targets(self, indices: np.ndarray | None = None) -> dict[str, np.ndarray]:
    sel = slice(None) if indices is None else indices
    return {k: self.data[k][sel] for k in TARGET_KEYS if k in self.data}


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
  targets = {k: batch[k] for k in TARGET_KEYS if k in batch}
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


def _encoder(ctx: Context, modality: str):
  spec = ctx.config.encoders[modality]
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


def _fit(ctx, stage, model, variables, loss_fn, arrays, cfg, eval_fn, *, frozen=None, tx=None):
  """Trains one stage on ``arrays`` (indexed by the train split) and returns its output.

  ``tx`` defaults to Adam at ``cfg.learning_rate``.
  """
  train_idx = ctx.split["train"]
  epoch_steps = pipeline.steps_per_epoch(len(train_idx), cfg.batch_size, drop_remainder=True)
  dataset = pipeline.batch_dataset(
    arrays,
    train_idx,
    batch_size=cfg.batch_size,
    seed=ctx.seed,
    drop_remainder=True,
    num_epochs=None,
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
      checkpoint_every=ctx.config.checkpoint_every,
      keep_checkpoints=ctx.config.keep_checkpoints,
      log_every=epoch_steps,
      writer=writer,
    )
  variables, _ = checkpoint.load_stage_output(ctx.workdir, stage)
  return variables


def _selection_fn(ctx, predict_fn, inputs, batch_size):
  """``eval_fn(params, batch_stats)`` scoring ``predict_fn`` on the validation split."""
  val = ctx.split["val"]
  val_inputs = [x[val] for x in inputs]

  def eval_fn(params, batch_stats):
    outputs = evaluation.predict(
      predict_fn, _variables(params, batch_stats), val_inputs, batch_size
    )
    return evaluation.scores(outputs, ctx.targets(val), ctx.task)

  return eval_fn


# Stage 0: one backbone per modality.
def unimodal_model(ctx: Context, modality: str) -> networks.Unimodal:
  return networks.Unimodal(_encoder(ctx, modality), ctx.num_outputs)


def train_unimodal(ctx: Context, modality: str) -> dict:
  """Stage 0: encoder + head of ``modality`` trained on the task alone."""
  stage = f"unimodal_{modality}"
  cfg = ctx.config.stages.unimodal
  model = unimodal_model(ctx, modality)
  variables = model.init(_stage_rng(ctx, stage), ctx.data[modality][:1])

  def loss_fn(params, batch_stats, batch, rng, frozen):
    del frozen
    (outputs, _), batch_stats = _apply_train(model, params, batch_stats, rng, batch[modality])
    return _task_loss(ctx, outputs, batch), ({}, batch_stats)

  predict_fn = jax.jit(lambda v, x: model.apply(v, x)[0])
  eval_fn = _selection_fn(ctx, predict_fn, [ctx.data[modality]], cfg.batch_size)
  arrays = {modality: ctx.data[modality], **ctx.targets()}
  return _fit(ctx, stage, model, variables, loss_fn, arrays, cfg, eval_fn)


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


def encode(ctx: Context, modality: str, inputs: np.ndarray, required_by: str) -> np.ndarray:
  """Tokens ``[N, L, d]`` of ``inputs`` from the teachers' saved backbone of ``modality``."""
  variables = teacher_backbone(ctx, modality, required_by)
  fn = jax.jit(_encoder(ctx, modality).apply)
  return evaluation.predict(fn, variables, [inputs], ctx.config.eval_batch_size)


def backbone_tokens(ctx: Context, required_by: str) -> dict[str, np.ndarray]:
  """Every modality's tokens of every example from the teachers' (frozen) backbones."""
  for m in ctx.modalities:
    if ("tokens", m) not in ctx.cache:
      ctx.cache["tokens", m] = encode(ctx, m, ctx.data[m], required_by)
  return {m: ctx.cache["tokens", m] for m in ctx.modalities}


# Stage 1: the joint teacher and the T-Nets.
def joint_model(ctx: Context) -> networks.JointTeacher:
  cfg = ctx.config.stages.joint
  encoders = [_encoder(ctx, m) for m in ctx.modalities] if cfg.finetune_backbones else []
  return networks.JointTeacher(
    ctx.num_outputs,
    len(ctx.config.privileged),
    tnet_hidden=tuple(cfg.tnet_hidden),
    dropout_rate=ctx.config.dropout_rate,
    encoders=tuple(encoders),
  )


def _joint_inputs(ctx: Context, required_by: str) -> list[np.ndarray]:
  """What the joint model takes: raw inputs if it fine-tunes the backbones, else tokens."""
  if ctx.config.stages.joint.finetune_backbones:
    return [ctx.data[m] for m in ctx.modalities]
  tokens = backbone_tokens(ctx, required_by)
  return [tokens[m] for m in ctx.modalities]


def train_joint(ctx: Context) -> dict:
  """Stage 1: fusion ``F_J`` on the task and the T-Nets ``H_m: f_v -> f_m``.

  With ``finetune_backbones`` the stage-0 backbones are loaded into the joint model and
  trained with it at ``backbone_learning_rate``.
  """
  cfg = ctx.config.stages.joint
  mods = ctx.modalities
  inputs = _joint_inputs(ctx, required_by="joint")
  model = joint_model(ctx)
  variables = model.init(_stage_rng(ctx, "joint"), [x[:1] for x in inputs])
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
      model, params, batch_stats, rng, [batch[m] for m in mods]
    )
    task_value = _task_loss(ctx, outputs, batch)
    tnet = sum(
      distill.hallucination_loss(
        *parallel.all_gather_batch((hallucinated[i], tokens[i + 1].mean(1))), kind=cfg.tnet_loss
      )
      for i in range(len(ctx.config.privileged))
    )
    loss = task_value + cfg.tnet_weight * tnet
    return loss, ({"task": task_value, "tnet": tnet}, batch_stats)

  predict_fn = jax.jit(lambda v, *x: model.apply(v, list(x))[0])
  eval_fn = _selection_fn(ctx, predict_fn, inputs, ctx.config.eval_batch_size)
  arrays = {**dict(zip(mods, inputs, strict=True)), **ctx.targets()}
  return _fit(ctx, "joint", model, variables, loss_fn, arrays, cfg, eval_fn, tx=tx)


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
  tokens = backbone_tokens(ctx, required_by="alignment")
  model = alignment_model(ctx)
  mods = ctx.modalities
  variables = model.init(_stage_rng(ctx, "alignment"), [tokens[m][:1] for m in mods])
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

  predict_fn = jax.jit(lambda v, *t: model.apply(v, list(t))[0])
  inputs = [tokens[m] for m in mods]
  eval_fn = _selection_fn(ctx, predict_fn, inputs, ctx.config.eval_batch_size)
  arrays = {**{m: tokens[m] for m in mods}, **ctx.targets()}
  return _fit(ctx, "alignment", model, {"params": params}, loss_fn, arrays, cfg, eval_fn, tx=tx)


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
    fn = jax.jit(lambda v, *x: jnp.concatenate(model.apply(v, list(x))[1::-1], axis=-1))
    both = evaluation.predict(fn, variables, _joint_inputs(ctx, required_by), batch_size)
    z, out = both[:, : -ctx.num_outputs], both[:, -ctx.num_outputs :]
    return {"teacher_z": z[:, None], "teacher_out": out[:, None]}
  variables, _ = checkpoint.load_stage_output(ctx.workdir, "alignment", required_by=required_by)
  tokens = backbone_tokens(ctx, required_by)
  inputs = [tokens[m] for m in ctx.modalities]
  model = alignment_model(ctx)

  def candidates(v, *t):
    outputs, z, adapted, head_outputs = model.apply(v, list(t))
    zs = jnp.concatenate([adapted, z[None]], axis=0)
    outs = jnp.concatenate([head_outputs, outputs[None]], axis=0)
    return jnp.concatenate([zs, outs], axis=-1).swapaxes(0, 1)

  both = evaluation.predict(jax.jit(candidates), variables, inputs, batch_size)
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
  method_cfg = ctx.config.method_params[method_name]

  def loss_fn(params, batch_stats, batch, rng, frozen):
    hallucinate = functools.partial(_hallucinate, ctx, frozen)
    (outputs, z_s), batch_stats = _apply_train(
      model, params, batch_stats, rng, batch[ctx.config.visual], hallucinate
    )
    targets = {k: v for k, v in batch.items() if k != ctx.config.visual}
    z_all, outputs_all, targets_all = parallel.all_gather_batch((z_s, outputs, targets))
    task_value = task_lib.task_loss(outputs_all, targets_all, ctx.task)
    loss, metrics = method.distill(
      method_cfg, task_value, z_all, outputs_all, targets_all, ctx.task
    )
    return loss, ({"task": task_value, **metrics}, batch_stats)

  return loss_fn


def train_student(ctx: Context, method_name: str) -> dict:
  """Stage 3: the student of ``method_name`` with the frozen T-Nets.

  Its batches hold the visual input (the frozen visual backbone's tokens, or the video when
  ``finetune_visual`` trains the backbone with the student), the teachers' per-sample
  targets (:func:`teacher_targets`) and the labels: no privileged input.
  """
  stage = f"student_{method_name}"
  cfg = ctx.config.stages.student
  visual = ctx.config.visual
  joint, _ = checkpoint.load_stage_output(ctx.workdir, "joint", required_by=stage)
  targets = teacher_targets(ctx, registry.get_method(method_name).teacher, required_by=stage)
  if cfg.finetune_visual:
    inputs = ctx.data[visual]
  else:
    inputs = backbone_tokens(ctx, required_by=stage)[visual]
  model = student_model(ctx)
  hallucinate = functools.partial(_hallucinate, ctx, joint["params"])
  variables = model.init(_stage_rng(ctx, stage), inputs[:1], hallucinate)
  tx = None
  if cfg.finetune_visual:
    backbone = teacher_backbone(ctx, visual, required_by=stage)
    variables = _graft(variables, "encoder", backbone)
    tx = _adam(variables["params"], cfg.learning_rate, encoder=cfg.backbone_learning_rate)

  loss_fn = student_loss(ctx, method_name, model)
  predict_fn = jax.jit(lambda v, x: model.apply(v, x, hallucinate)[0])
  eval_fn = _selection_fn(ctx, predict_fn, [inputs], ctx.config.eval_batch_size)
  arrays = {visual: inputs, **targets, **ctx.targets()}
  return _fit(
    ctx, stage, model, variables, loss_fn, arrays, cfg, eval_fn, frozen=joint["params"], tx=tx
  )


def student_predictor(ctx: Context, method_name: str):
  """The test-time path ``video -> E_v -> H -> F_S``.

  Returns ``fn(video [N, ...]) -> (outputs [N, C], z_S [N, d])``. It takes the visual
  array alone: no privileged input can reach a student's prediction.
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
  def fn(variables, video):
    backbone, joint_params, student = variables
    x = video if backbone is None else encoder.apply(backbone, video)
    outputs, z = model.apply(student, x, functools.partial(_hallucinate, ctx, joint_params))
    return jnp.concatenate([outputs, z], axis=-1)

  variables = (backbone, joint["params"], student)

  def predictor(video):
    both = evaluation.predict(fn, variables, [video], ctx.config.eval_batch_size)
    return both[:, : ctx.num_outputs], both[:, ctx.num_outputs :]

  return predictor


def unimodal_predictor(ctx: Context, modality: str):
  """``fn(x [N, ...]) -> outputs [N, C]`` of the saved stage-0 model of ``modality``."""
  variables, _ = checkpoint.load_stage_output(ctx.workdir, f"unimodal_{modality}")
  model = unimodal_model(ctx, modality)
  fn = jax.jit(lambda v, x: model.apply(v, x)[0])
  return lambda x: evaluation.predict(fn, variables, [x], ctx.config.eval_batch_size)


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
