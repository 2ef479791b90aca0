"""Stage 3, ``student_<method>``: a visual-only student distilled from frozen teachers.

Every student method of the registry (``pkd``, ``logit_kd``, ``spkd``, ``rkd``, ``pkdot``,
``mt_pkdot`` and their variants) trains the same network (``stages.student.network``): the
research release's ``E_v -> H -> F_S``, with the frozen T-Nets ``H`` of stage 1, or the
visual-only network itself (:class:`~mtpkd_jax.methods.networks.VisualStudent`). Its
batches carry the visual input and the teachers' per-sample targets
(:func:`teacher_targets`), never a privileged input; its loss is the method's named terms
(:mod:`mtpkd_jax.methods.objective`). At test time it sees the visual modality alone
(:func:`student_predictor`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtpkd_jax.data import table as table_lib
from mtpkd_jax.losses import task as task_lib
from mtpkd_jax.methods import (
  alignment,
  backbones,
  evaluation,
  joint,
  networks,
  objective,
  registry,
  unimodal,
)
from mtpkd_jax.methods.context import Context, Memo, Stage
from mtpkd_jax.train import checkpoint, optimizers, parallel
from mtpkd_jax.train import variables as variables_lib

_TEACHER_TARGETS = {"joint": joint.joint_targets, "aligned": alignment.aligned_targets}


def teacher_targets(ctx: Context, memo: Memo, source: str, required_by: str) -> dict:
  """Per-sample teacher embeddings ``teacher_z [N, T, d]`` and outputs ``teacher_out [N, T, C]``.

  ``joint``: stage 1's ``z_J`` (``T = 1``, :func:`~mtpkd_jax.methods.joint.joint_targets`).
  ``aligned``: stage 2's adapted embedding of every modality, then its ``z_J`` (``T = M + 1``,
  :func:`~mtpkd_jax.methods.alignment.aligned_targets`). Computed for every example from the
  saved stage outputs, once per run: kept in ``memo`` under ``("targets", source)``.
  """
  return memo.get(("targets", source), lambda: _TEACHER_TARGETS[source](ctx, memo, required_by))


def student_model(ctx: Context) -> networks.Student | networks.VisualStudent:
  """The student network (``stages.student.network``).

  The fusion student (with ``finetune_visual``, the visual encoder too), or the visual-only
  network (:class:`~mtpkd_jax.methods.networks.VisualStudent`).
  """
  if ctx.settings.student.network == "visual":
    return networks.VisualStudent(ctx.encoder(ctx.config.visual), ctx.num_outputs)
  encoder = None
  if ctx.settings.student.finetune_visual:
    encoder = ctx.encoder(ctx.config.visual)
  return networks.Student(ctx.num_outputs, dropout_rate=ctx.config.dropout_rate, encoder=encoder)


def _reads_raw_input(ctx: Context) -> bool:
  """Whether the student trains the visual encoder, and so reads the raw visual input."""
  cfg = ctx.settings.student
  return cfg.network == "visual" or cfg.finetune_visual


def _student_keys(ctx: Context) -> tuple[str, ...]:
  """The columns a student's input is read from: the visual tokens, or its raw input."""
  if _reads_raw_input(ctx):
    return ctx.schema.input_keys(ctx.config.visual)
  return (ctx.config.visual,)


def _student_arg(ctx: Context, batch):
  if _reads_raw_input(ctx):
    return ctx.model_input(batch, ctx.config.visual)
  return batch[ctx.config.visual]


def sees_unlabelled(ctx: Context, method_name: str) -> bool:
  """Whether the student of ``method_name`` trains on unlabelled examples too.

  Its parameters ask for them (``unlabelled``) and ``config.label_budget`` leaves some.
  """
  wanted = ctx.method_params(method_name).unlabelled
  return wanted and ctx.unlabelled_batch_size("student") > 0


def student_loss(
  ctx: Context, method_name: str, model: networks.Student, method: registry.Method | None = None
):
  """The per-device student loss ``(params, batch_stats, batch, rng, frozen_joint_params)``.

  The distillation terms compare samples with each other (similarity matrices, transport,
  relations, routing) and ``1 - CCC`` is a statistic of the batch, so every term sees the
  global batch: the student's embeddings and outputs and the batch's targets are
  all-gathered over the ``data`` axis first (:func:`parallel.all_gather_batch`). Every
  device then computes the same global-batch loss, and averaging the gradients over
  devices gives exactly the single-device gradient. The loss is the method's terms, ``task``
  and its distillation's, weighed by :func:`objective.total`; every term is logged.
  ``method`` replaces the registry's recipe of ``method_name`` (its parameters stay
  ``method_name``'s): the training benchmark times a student with a term taken out.

  A student that sees the unlabelled examples (:func:`sees_unlabelled`) gets global batches
  of :meth:`~mtpkd_jax.methods.context.Context.batch_size` labelled rows followed by
  unlabelled ones: the task term reads the labelled rows alone, and the distillation gets
  every row's targets but the labels ``y`` of the labelled rows only, the first ones.
  """
  method = method or registry.get_method(method_name)
  method_cfg = ctx.method_params(method_name)
  input_keys = _student_keys(ctx)
  # The batch's first rows, the labelled ones (all of them without unlabelled rows).
  labelled = ctx.batch_size("student") if sees_unlabelled(ctx, method_name) else None

  def loss_fn(params, batch_stats, batch, rng, frozen):
    hallucinate = functools.partial(joint.hallucinate, ctx, frozen)
    (outputs, z_s), batch_stats = variables_lib.apply_train(
      model, params, batch_stats, rng, _student_arg(ctx, batch), hallucinate
    )
    targets = {k: v for k, v in batch.items() if k not in input_keys}
    z_all, outputs_all, targets_all = parallel.all_gather_batch((z_s, outputs, targets))
    labels = targets_all[task_lib.TARGET_KEY][:labelled]
    targets_all = {**targets_all, task_lib.TARGET_KEY: labels}
    task_value = task_lib.task_loss(outputs_all[:labelled], targets_all, ctx.task)
    terms, metrics = method.distill(method_cfg, z_all, outputs_all, targets_all, ctx.task)
    terms = {"task": task_value, **terms}
    loss = objective.total(terms, method.weights, method_cfg)
    return loss, ({**terms, **metrics}, batch_stats)

  return loss_fn


def train_student(ctx: Context, memo: Memo, stage: Stage) -> dict:
  """Stage 3: the student of method ``stage.subject``.

  Its batches hold the visual input (the frozen visual backbone's tokens, or the raw input
  when the student trains the encoder: ``finetune_visual``, or the ``visual`` network), the
  teachers' per-sample targets (:func:`teacher_targets`) and the labels: no privileged
  input. The ``visual`` network starts from visual-only's initial variables
  (:func:`~mtpkd_jax.methods.unimodal.initial_variables`).
  """
  method_name = stage.subject
  cfg = ctx.settings.student
  visual = ctx.config.visual
  joint_out, _ = checkpoint.load_stage_output(ctx.workdir, "joint", required_by=stage.name)
  source = registry.get_method(method_name).teacher
  targets = teacher_targets(ctx, memo, source, required_by=stage.name)
  if _reads_raw_input(ctx):
    inputs = ctx.inputs(visual)
  else:
    tokens = backbones.backbone_tokens(ctx, memo, required_by=stage.name)[visual]
    inputs = table_lib.ArrayTable({visual: tokens})
  model = student_model(ctx)
  hallucinate = functools.partial(joint.hallucinate, ctx, joint_out["params"])
  scale = ctx.method_params(method_name).lr_scale
  tx = optax.adam(cfg.learning_rate * scale)
  if cfg.network == "visual":
    variables = unimodal.initial_variables(ctx, visual, unimodal.unimodal_model(ctx, visual))
  else:
    first = _student_arg(ctx, inputs.take([0]))
    variables = model.init(ctx.stage_rng(stage.name), first, hallucinate)
  if cfg.network == "fusion" and cfg.finetune_visual:
    backbone = backbones.teacher_backbone(ctx, visual, required_by=stage.name)
    variables = variables_lib.graft(variables, "encoder", backbone)
    tx = optimizers.adam(
      variables["params"],
      cfg.learning_rate * scale,
      encoder=cfg.backbone_learning_rate * scale,
    )

  loss_fn = student_loss(ctx, method_name, model)
  predict_fn = jax.jit(lambda v, b: model.apply(v, _student_arg(ctx, b), hallucinate)[0])
  eval_fn = ctx.selection_fn(predict_fn, inputs, ctx.config.eval_batch_size)
  table = table_lib.join(inputs, table_lib.ArrayTable(targets), ctx.targets())
  frozen = joint_out["params"]
  unlabelled = sees_unlabelled(ctx, method_name)
  terms = term_weights(ctx, method_name) if cfg.term_grad_norms else None
  return ctx.fit(
    stage,
    model,
    variables,
    loss_fn,
    table,
    eval_fn,
    frozen=frozen,
    tx=tx,
    unlabelled=unlabelled,
    term_weights=terms,
  )


def term_weights(ctx: Context, method_name: str) -> dict[str, float]:
  """``{term: weight}``: the weight of each loss term of ``method_name``'s student."""
  method, params = registry.get_method(method_name), ctx.method_params(method_name)
  return {term: getattr(params, key) for term, key in method.weights.items()}


def student_predictor(ctx: Context, method_name: str):
  """The test-time path ``visual input -> E_v -> H -> F_S``.

  Returns ``fn(table, indices=None) -> (outputs [n, C], z_S [n, d])``, which reads the visual
  modality's columns of ``table`` alone (``schema.input_keys(visual)``): no privileged input
  can reach a student's prediction.
  """
  stage = f"student_{method_name}"
  visual = ctx.config.visual
  backbone = None  # A trained visual encoder is part of the student.
  if not _reads_raw_input(ctx):
    backbone = backbones.teacher_backbone(ctx, visual, required_by=stage)
  joint_out, _ = checkpoint.load_stage_output(ctx.workdir, "joint", required_by=stage)
  student, _ = checkpoint.load_stage_output(ctx.workdir, stage)
  encoder, model = ctx.encoder(visual), student_model(ctx)

  @jax.jit
  def fn(variables, batch):
    backbone, joint_params, student = variables
    x = ctx.model_input(batch, visual)
    if backbone is not None:
      x = encoder.apply(backbone, x, method=networks.call_encoder)
    outputs, z = model.apply(student, x, functools.partial(joint.hallucinate, ctx, joint_params))
    return jnp.concatenate([outputs, z], axis=-1)

  variables = (backbone, joint_out["params"], student)
  keys = ctx.schema.input_keys(visual)

  def predictor(table: table_lib.Table, indices: np.ndarray | None = None):
    inputs = table.select(keys)
    both = evaluation.predict(fn, variables, inputs, ctx.config.eval_batch_size, indices)
    return both[:, : ctx.num_outputs], both[:, ctx.num_outputs :]

  return predictor
