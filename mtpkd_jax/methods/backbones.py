"""The teachers' backbones, loaded from disk, and the tokens they give every example.

By default the backbones are frozen after stage 0 (the research release's default), so the
later stages run on their tokens, computed once per run (:func:`backbone_tokens`, kept in
the run's :class:`~mtpkd_jax.methods.context.Memo`). With
``stages.joint.finetune_backbones`` the teachers' backbones are the joint stage's fine-tuned
copies instead (:func:`teacher_backbone`).
"""

from __future__ import annotations

import jax
import numpy as np

from mtpkd_jax.data import table as table_lib
from mtpkd_jax.methods import evaluation, networks
from mtpkd_jax.methods.context import Context, Memo
from mtpkd_jax.train import checkpoint
from mtpkd_jax.train import variables as variables_lib


def stage0_backbone(ctx: Context, modality: str, required_by: str) -> dict:
  """Variables of stage 0's backbone of ``modality``, loaded from disk."""
  variables, _ = checkpoint.load_stage_output(
    ctx.workdir, f"unimodal_{modality}", required_by=required_by
  )
  return variables_lib.sub_variables(variables, "encoder")


def teacher_backbone(ctx: Context, modality: str, required_by: str) -> dict:
  """Variables of the teachers' backbone of ``modality``, loaded from disk.

  Stage 0's backbone, or the joint stage's copy when ``stages.joint.finetune_backbones``.
  """
  if not ctx.settings.joint.finetune_backbones:
    return stage0_backbone(ctx, modality, required_by)
  variables, _ = checkpoint.load_stage_output(ctx.workdir, "joint", required_by=required_by)
  return variables_lib.sub_variables(variables, f"encoders_{ctx.modalities.index(modality)}")


def encode(ctx: Context, modality: str, required_by: str) -> np.ndarray:
  """Tokens ``[N, L, d]`` of every example from the teachers' saved backbone of ``modality``.

  The inputs are read and encoded ``eval_batch_size`` examples at a time.
  """
  variables = teacher_backbone(ctx, modality, required_by)
  encoder = ctx.encoder(modality)
  fn = jax.jit(
    lambda v, b: encoder.apply(v, ctx.model_input(b, modality), method=networks.call_encoder)
  )
  return evaluation.predict(fn, variables, ctx.inputs(modality), ctx.config.eval_batch_size)


def backbone_tokens(ctx: Context, memo: Memo, required_by: str) -> dict[str, np.ndarray]:
  """Every modality's tokens of every example from the teachers' (frozen) backbones.

  Encoded once per run: kept in ``memo`` under ``("tokens", modality)``.
  """
  return {
    m: memo.get(("tokens", m), lambda m=m: encode(ctx, m, required_by)) for m in ctx.modalities
  }


def token_table(ctx: Context, memo: Memo, required_by: str) -> table_lib.ArrayTable:
  """:func:`backbone_tokens` as a table, one column per modality."""
  return table_lib.ArrayTable(backbone_tokens(ctx, memo, required_by))
