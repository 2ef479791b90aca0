"""Stage 2, ``alignment`` (MT-PKDOT only): self-distillation of every modality with ``z_J``.

An adapter and a head per modality, trained with the joint fusion (loaded from stage 1) so
that each adapted embedding ``a_m`` agrees with ``z_J``. The adapted embeddings and ``z_J``
are MT-PKDOT's candidate teachers (:func:`aligned_targets`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mtpkd_jax.data import table as table_lib
from mtpkd_jax.losses import distill
from mtpkd_jax.methods import backbones, evaluation, networks, objective
from mtpkd_jax.methods.context import Context, Memo, Stage
from mtpkd_jax.train import checkpoint, optimizers
from mtpkd_jax.train import variables as variables_lib


def alignment_model(ctx: Context) -> networks.Alignment:
  """Adapters and heads of every modality, and the joint fusion."""
  return networks.Alignment(
    ctx.num_outputs, len(ctx.modalities), dropout_rate=ctx.config.dropout_rate
  )


def alignment_loss(ctx: Context, model: networks.Alignment):
  """The per-device loss of stage 2, ``L_SD`` (see :func:`train_alignment`)."""
  mods = ctx.modalities

  def loss_fn(params, batch_stats, batch, rng, frozen):
    del frozen
    (outputs, z, adapted, head_outputs), batch_stats = variables_lib.apply_train(
      model, params, batch_stats, rng, [batch[m] for m in mods]
    )
    align = sum(
      distill.cosine_distance(adapted[i], z, stop_teacher_gradient=False) for i in range(len(mods))
    )
    joint_task = objective.task_loss(outputs, batch, ctx.task)
    heads = sum(objective.task_loss(head_outputs[i], batch, ctx.task) for i in range(len(mods)))
    heads = heads / len(mods)
    loss = 0.5 * align + 0.5 * (joint_task + heads)
    return loss, ({"align": align, "task": joint_task, "heads": heads}, batch_stats)

  return loss_fn


def train_alignment(ctx: Context, memo: Memo, stage: Stage) -> dict:
  """Stage 2: adapters and heads per modality, mutually aligned with the joint ``z_J``.

  ``L_SD = ½ Σ_m mean(1 - cos(a_m, z_J)) + ½ (L_task(joint) + Σ_m L_task(h_m(a_m)) / M)``;
  ``z_J`` is not stopped: the joint fusion, loaded from stage 1, trains with its own
  learning rate.
  """
  cfg = ctx.settings.alignment
  joint, _ = checkpoint.load_stage_output(ctx.workdir, "joint", required_by=stage.name)
  tokens = backbones.token_table(ctx, memo, required_by=stage.name)
  model = alignment_model(ctx)
  mods = ctx.modalities
  first = tokens.take([0])
  variables = model.init(ctx.stage_rng(stage.name), [first[m] for m in mods])
  params = dict(variables["params"])
  params["fusion"] = joint["params"]["fusion"]
  tx = optimizers.adam(params, cfg.learning_rate, fusion=cfg.fusion_learning_rate)
  predict_fn = jax.jit(lambda v, b: model.apply(v, [b[m] for m in mods])[0])
  eval_fn = ctx.selection_fn(predict_fn, tokens, ctx.config.eval_batch_size)
  table = table_lib.join(tokens, ctx.targets())
  loss_fn = alignment_loss(ctx, model)
  return ctx.fit(stage, model, {"params": params}, loss_fn, table, eval_fn, tx=tx)


def aligned_targets(ctx: Context, memo: Memo, required_by: str) -> dict[str, np.ndarray]:
  """Stage 2's adapted embedding of every modality, then its ``z_J``, every example.

  ``teacher_z [N, M + 1, d]`` and ``teacher_out [N, M + 1, C]`` (the joint is last).
  """
  variables, _ = checkpoint.load_stage_output(ctx.workdir, "alignment", required_by=required_by)
  tokens = backbones.token_table(ctx, memo, required_by)
  model = alignment_model(ctx)

  def candidates(v, b):
    outputs, z, adapted, head_outputs = model.apply(v, [b[m] for m in ctx.modalities])
    zs = jnp.concatenate([adapted, z[None]], axis=0)
    outs = jnp.concatenate([head_outputs, outputs[None]], axis=0)
    return jnp.concatenate([zs, outs], axis=-1).swapaxes(0, 1)

  both = evaluation.predict(jax.jit(candidates), variables, tokens, ctx.config.eval_batch_size)
  return {"teacher_z": both[..., : -ctx.num_outputs], "teacher_out": both[..., -ctx.num_outputs :]}
