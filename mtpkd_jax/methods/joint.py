"""Stage 1, ``joint``: the joint teacher ``F_J`` over every modality, and the T-Nets.

The fusion is trained on the task; each T-Net ``H_m: f_v -> f_m`` learns a privileged
modality's pooled embedding from the visual tokens (``stages.joint.tnet_loss``), and, with
frozen backbones, is selected on its own validation loss (``tnet_loss``; see
:func:`train_joint`). The joint teacher's outputs are the ``joint_teacher`` method; its
embedding ``z_J`` is the teacher of PKDOT and the baselines (:func:`joint_targets`); the
T-Nets, frozen, feed every student (:func:`hallucinate`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mtpkd_jax.data import table as table_lib
from mtpkd_jax.losses import distill
from mtpkd_jax.methods import backbones, evaluation, networks, objective
from mtpkd_jax.methods.context import Context, Memo, Stage
from mtpkd_jax.train import checkpoint, loop, optimizers, parallel
from mtpkd_jax.train import variables as variables_lib


def joint_model(ctx: Context) -> networks.JointTeacher:
  """The fusion and T-Nets; with ``finetune_backbones``, every modality's encoder too."""
  cfg = ctx.settings.joint
  encoders = [ctx.encoder(m) for m in ctx.modalities] if cfg.finetune_backbones else []
  return networks.JointTeacher(
    ctx.num_outputs,
    len(ctx.config.privileged),
    tnet_hidden=cfg.tnet_hidden,
    dropout_rate=ctx.config.dropout_rate,
    modality_dropout=cfg.modality_dropout,
    encoders=tuple(encoders),
  )


def joint_inputs(ctx: Context, memo: Memo, required_by: str) -> table_lib.Table:
  """What the joint model reads: raw inputs if it fine-tunes the backbones, else tokens."""
  if ctx.settings.joint.finetune_backbones:
    return table_lib.join(*(ctx.inputs(m) for m in ctx.modalities))
  return backbones.token_table(ctx, memo, required_by)


def joint_args(ctx: Context, batch) -> list:
  """The joint model's per-modality inputs, from a batch of :func:`joint_inputs`."""
  if ctx.settings.joint.finetune_backbones:
    return [ctx.model_input(batch, m) for m in ctx.modalities]
  return [batch[m] for m in ctx.modalities]


def tnet_modules(ctx: Context) -> tuple[str, ...]:
  """The T-Nets' module names, one per privileged modality."""
  return tuple(f"tnet{i}" for i in range(len(ctx.config.privileged)))


def tnet_pairs(hallucinated, tokens):
  """``(H_m(f_v), pool(f_m))`` of every privileged modality ``m``, both ``[B, P, d]``."""
  return hallucinated.swapaxes(0, 1), jnp.stack([t.mean(1) for t in tokens[1:]], axis=1)


def tnet_loss(hallucinated, real, kind: str):
  """The T-Nets' loss, summed over the privileged modalities; both ``[B, P, d]``."""
  return sum(
    distill.hallucination_loss(hallucinated[:, i], real[:, i], kind=kind)
    for i in range(real.shape[1])
  )


def joint_loss(ctx: Context, model: networks.JointTeacher):
  """The per-device loss of stage 1: ``L_task(F_J) + tnet_weight * L_tnet``.

  Both on the global batch (the T-Nets' MMD is a statistic of the batch).
  """
  cfg = ctx.settings.joint

  def loss_fn(params, batch_stats, batch, rng, frozen):
    del frozen
    (outputs, _, hallucinated, tokens), batch_stats = variables_lib.apply_train(
      model, params, batch_stats, rng, joint_args(ctx, batch)
    )
    task_value = objective.task_loss(outputs, batch, ctx.task)
    pairs = parallel.all_gather_batch(tnet_pairs(hallucinated, tokens))
    tnet = tnet_loss(*pairs, cfg.tnet_loss)
    loss = task_value + cfg.tnet_weight * tnet
    return loss, ({"task": task_value, "tnet": tnet}, batch_stats)

  return loss_fn


def joint_eval_fn(ctx: Context, model: networks.JointTeacher, inputs: table_lib.Table):
  """The joint teacher's validation scores, plus ``tnet_loss``: the T-Nets' own loss.

  ``tnet_loss`` is the training loss of the T-Nets averaged over consecutive validation
  batches of (about) the training batch size, so that a batch statistic such as the MMD is
  measured at the scale it is trained at.
  """
  cfg = ctx.settings.joint
  val = ctx.split["val"]
  targets = ctx.dataset.y[val]

  @jax.jit
  def predict_fn(variables, batch):
    outputs, _, hallucinated, tokens = model.apply(variables, joint_args(ctx, batch))
    return outputs, *tnet_pairs(hallucinated, tokens)

  loss = jax.jit(functools.partial(tnet_loss, kind=cfg.tnet_loss))

  def eval_fn(params, batch_stats):
    variables = variables_lib.variables(params, batch_stats)
    outputs, hallucinated, real = evaluation.predict(
      predict_fn, variables, inputs, ctx.config.eval_batch_size, val
    )
    values = evaluation.scores(outputs, targets, ctx.schema.task, ctx.config.metrics)
    chunks = np.array_split(np.arange(len(val)), max(1, len(val) // ctx.batch_size("joint")))
    losses = [loss(hallucinated[c], real[c]) for c in chunks]
    values["tnet_loss"] = float(np.average(losses, weights=[len(c) for c in chunks]))
    return values

  return eval_fn


def train_joint(ctx: Context, memo: Memo, stage: Stage) -> dict:
  """Stage 1: fusion ``F_J`` on the task and the T-Nets ``H_m: f_v -> f_m``.

  With frozen backbones the T-Nets handed on are those of the lowest validation
  ``tnet_loss`` (:class:`mtpkd_jax.train.loop.PartSelection`), the rest that of the best
  validation score. With ``finetune_backbones`` the stage-0 backbones are loaded into the
  joint model and trained with it at ``backbone_learning_rate``, and the whole model comes
  from the best validation score: a T-Net reads the visual encoder's features, which change
  from step to step, so T-Nets of another step would run on features they were never
  selected on (and their recorded loss would not be theirs).
  """
  cfg = ctx.settings.joint
  mods = ctx.modalities
  inputs = joint_inputs(ctx, memo, required_by=stage.name)
  model = joint_model(ctx)
  variables = model.init(ctx.stage_rng(stage.name), joint_args(ctx, inputs.take([0])))
  tx = None
  if cfg.finetune_backbones:
    for i, m in enumerate(mods):
      backbone = backbones.stage0_backbone(ctx, m, required_by=stage.name)
      variables = variables_lib.graft(variables, f"encoders_{i}", backbone)
    rates = {f"encoders_{i}": cfg.backbone_learning_rate for i in range(len(mods))}
    tx = optimizers.adam(variables["params"], cfg.learning_rate, **rates)

  table = table_lib.join(inputs, ctx.targets())
  parts = {}
  if not cfg.finetune_backbones:
    parts["tnets"] = loop.PartSelection(tnet_modules(ctx), metric="tnet_loss", mode="min")
  eval_fn = joint_eval_fn(ctx, model, inputs)
  loss_fn = joint_loss(ctx, model)
  return ctx.fit(stage, model, variables, loss_fn, table, eval_fn, tx=tx, parts=parts)


def hallucinate(ctx: Context, joint_params, visual_tokens):
  """The T-Nets of ``joint_params`` on ``visual_tokens``: ``[num_privileged, B, d]``."""
  return joint_model(ctx).apply(
    {"params": joint_params}, visual_tokens, method=networks.JointTeacher.hallucinate
  )


def joint_targets(ctx: Context, memo: Memo, required_by: str) -> dict[str, np.ndarray]:
  """The saved joint teacher's ``z_J`` ``[N, 1, d]`` and outputs ``[N, 1, C]``, every example."""
  variables, _ = checkpoint.load_stage_output(ctx.workdir, "joint", required_by=required_by)
  model = joint_model(ctx)
  fn = jax.jit(lambda v, b: jnp.concatenate(model.apply(v, joint_args(ctx, b))[1::-1], axis=-1))
  both = evaluation.predict(
    fn, variables, joint_inputs(ctx, memo, required_by), ctx.config.eval_batch_size
  )
  z, out = both[:, : -ctx.num_outputs], both[:, -ctx.num_outputs :]
  return {"teacher_z": z[:, None], "teacher_out": out[:, None]}
