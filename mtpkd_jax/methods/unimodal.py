"""Stage 0, ``unimodal_<modality>``: one encoder + head per modality, trained on the task.

Its encoder is the backbone the later stages start from (:mod:`mtpkd_jax.methods.backbones`);
its model is also the ``<modality>_only`` method (``visual_only`` for the visual one). The
encoder starts from random weights, or from the ``.npz`` file its config entry names as
``pretrained`` (e.g. torchvision's Kinetics-400 R3D-18, converted by
``experiments/convert_torchvision.py``).
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from mtpkd_jax.data import table as table_lib
from mtpkd_jax.methods import evaluation, networks, objective
from mtpkd_jax.methods.context import Context, Memo, Stage
from mtpkd_jax.train import checkpoint
from mtpkd_jax.train import variables as variables_lib


def unimodal_model(ctx: Context, modality: str) -> networks.Unimodal:
  """Encoder + linear head of ``modality``."""
  return networks.Unimodal(ctx.encoder(modality), ctx.num_outputs)


def unimodal_loss(ctx: Context, modality: str, model: networks.Unimodal):
  """The per-device loss of stage 0: the task loss on the global batch."""

  def loss_fn(params, batch_stats, batch, rng, frozen):
    del frozen
    x = ctx.model_input(batch, modality)
    (outputs, _), batch_stats = variables_lib.apply_train(model, params, batch_stats, rng, x)
    return objective.task_loss(outputs, batch, ctx.task), ({}, batch_stats)

  return loss_fn


def initial_variables(ctx: Context, modality: str, model: networks.Unimodal) -> dict:
  """Stage 0's variables before training: random, with the encoder's ``pretrained`` file.

  Raises:
    FileNotFoundError: if the encoder's config entry names a file that does not exist.
    ValueError: naming the parameters, if the file's do not fit the encoder.
  """
  variables = model.init(
    ctx.stage_rng(f"unimodal_{modality}"), ctx.first(ctx.inputs(modality), modality)
  )
  path = ctx.encoder_spec(modality).get("pretrained")
  if not path:
    return variables
  path = Path(path).expanduser()
  if not path.is_file():
    raise FileNotFoundError(f"The pretrained file of the {modality!r} encoder, {path}, is missing.")
  pretrained = variables_lib.load_npz(path)
  return variables_lib.graft_checked(variables, "encoder", pretrained, source=str(path))


def train_unimodal(ctx: Context, memo: Memo, stage: Stage) -> dict:
  """Stage 0: encoder + head of the modality ``stage.subject`` trained on the task alone."""
  del memo  # Stage 0 reads the raw inputs alone.
  modality = stage.subject
  cfg = ctx.settings.unimodal
  model = unimodal_model(ctx, modality)
  inputs = ctx.inputs(modality)
  variables = initial_variables(ctx, modality, model)
  predict_fn = jax.jit(lambda v, b: model.apply(v, ctx.model_input(b, modality))[0])
  eval_fn = ctx.selection_fn(predict_fn, inputs, cfg.batch_size)
  table = table_lib.join(inputs, ctx.targets())
  loss_fn = unimodal_loss(ctx, modality, model)
  return ctx.fit(stage, model, variables, loss_fn, table, eval_fn)


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
