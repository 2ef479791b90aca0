"""CMKT, reconstructed: the weak test-time modality learns from a strong one.

Rajan, Brutti and Cavallaro's cross-modal knowledge transfer (arXiv 2108.00809) is known here
from its abstract only; what the abstract does not pin down is a config option
(``config.method_params.cmkt``), and ``docs/results/synthetic_cmkt.md`` says which parts are
reconstructed.

* Stage 1 is stage 0's model of the strong modality, ``unimodal_<strong>``: its encoder
  ``E_s`` and head ``C``, trained on the task. It is frozen from then on.
* Stage 2, ``cmkt_<method>``: the weak modality's encoder ``E_w`` (the test-time modality,
  ``config.visual``) gives the sequence ``z_w``; the decoder ``D`` translates it into
  ``E_s``'s sequence. The loss is the method's named terms
  (:mod:`~mtpkd_jax.methods.objective`)::

      task_weight * L_task(C(pool(z_w)), y)
      + lambda_tr * L_tr(D(z_w), E_s(x_s))          (translation, ``l1`` or ``mse``)
      + lambda_al * L_align(pool(z_w), pool(E_s(x_s)))  (``dcca``, ``cosine`` or ``mse``)
      + lambda_ot * L_OT(pool(z_w), pool(E_s(x_s)))     (``cmkt_ot`` only: MT-PKDOT's term)

  Deep CCA compares ``align_dim`` directions of each side: a learned linear map of
  ``pool(z_w)`` and the strong embeddings' top principal directions on the training examples
  (:func:`principal_projection`). ``C`` is the strong model's head, frozen
  (``head="frozen"``, the default) or fine-tuned,
  or a new head (``"new"``). The translation compares the steps valid in both sequences, so
  the two modalities must be word-aligned (the same steps).
* Test time: ``C(pool(E_w(x_w)))``, the weak modality alone (:func:`cmkt_predictor`).

The strong encoder's sequences, masks and pooled embeddings of every example are computed
once per run from its saved stage output (:func:`strong_targets`); a stage-2 batch holds the
weak input, these targets and the labels, never the strong input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mtpkd_jax import models
from mtpkd_jax.data import table as table_lib
from mtpkd_jax.losses import alignment, translation
from mtpkd_jax.losses import task as task_lib
from mtpkd_jax.methods import backbones, evaluation, networks, objective, registry
from mtpkd_jax.methods import params as params_lib
from mtpkd_jax.methods.context import Context, Memo, Stage
from mtpkd_jax.models import sequence
from mtpkd_jax.train import checkpoint, optimizers, parallel
from mtpkd_jax.train import variables as variables_lib

# Batch keys of the frozen strong encoder's outputs, and of what deep CCA aligns with.
STRONG_SEQUENCE, STRONG_MASK, STRONG_Z = "strong_sequence", "strong_mask", "strong_z"
STRONG_ALIGNED = "strong_aligned"


def strong_targets(ctx: Context, memo: Memo, required_by: str) -> dict[str, np.ndarray]:
  """The frozen ``E_s``'s outputs on every example: sequence, valid steps, pooled embedding.

  ``strong_sequence [N, L, d]`` (zero on padded steps), ``strong_mask [N, L]`` and
  ``strong_z [N, d]`` (their masked mean), from the saved ``unimodal_<strong>`` stage in eval
  mode; computed once per run, kept in ``memo`` under ``("strong", modality)``.
  """
  strong = ctx.strong

  def compute():
    variables = backbones.stage0_backbone(ctx, strong, required_by)
    encoder = ctx.encoder(strong)

    def fn(values, batch):
      z, mask = encoder.apply(values, ctx.model_input(batch, strong), method=networks.call_sequence)
      return z, mask, sequence.masked_mean(z, mask)[:, 0]

    z, mask, pooled = evaluation.predict(
      jax.jit(fn), variables, ctx.inputs(strong), ctx.config.eval_batch_size
    )
    return {STRONG_SEQUENCE: z, STRONG_MASK: mask, STRONG_Z: pooled}

  return memo.get(("strong", strong), compute)


def align_dim(cfg: params_lib.CMKT) -> int:
  """Deep CCA's width (``cfg.align_dim``); 0, the pooled embeddings, for other alignments."""
  return cfg.align_dim if cfg.alignment == "dcca" else 0


def principal_projection(z: np.ndarray, train: np.ndarray, dim: int) -> np.ndarray:
  """``z [N, d]`` centred and projected on its top ``dim`` principal directions on ``train``.

  Deep CCA's strong side: a batch of ``B`` examples can be correlated by chance with any
  ``B - 1`` directions, so the frozen strong embeddings are compared through a few fixed
  directions (and the weak ones through a learned map to as many).

  Raises:
    ValueError: if ``dim`` exceeds the embedding width.
  """
  if not 0 < dim <= z.shape[1]:
    raise ValueError(f"`align_dim` must be in [1, {z.shape[1]}] (the strong width), got {dim}.")
  mean = z[train].mean(axis=0)
  directions = np.linalg.svd(z[train] - mean, full_matrices=False)[2][:dim]
  return ((z - mean) @ directions.T).astype(np.float32)


def stage_targets(
  ctx: Context, memo: Memo, cfg: params_lib.CMKT, required_by: str
) -> dict[str, np.ndarray]:
  """What a stage-2 batch holds besides the weak input and ``y``, for every example.

  :func:`strong_targets`, and with deep CCA through ``align_dim`` directions the strong
  embeddings' projection on them (``strong_aligned``, :func:`principal_projection` on the
  training examples).
  """
  targets = strong_targets(ctx, memo, required_by)
  if not align_dim(cfg):
    return targets
  aligned = principal_projection(targets[STRONG_Z], ctx.split["train"], align_dim(cfg))
  return {**targets, STRONG_ALIGNED: aligned}


def weak_model(ctx: Context, cfg: params_lib.CMKT) -> networks.WeakModel:
  """``E_w`` (the weak modality's configured encoder), ``D`` to ``E_s``'s width, ``C``."""
  decoder = models.SequenceDecoder(ctx.config.embed_dim, **cfg.decoder)
  return networks.WeakModel(
    ctx.encoder(ctx.config.visual), decoder, ctx.num_outputs, align_features=align_dim(cfg)
  )


def cmkt_terms(
  cfg: params_lib.CMKT,
  method: registry.Method,
  outputs: jax.Array,
  z_w: jax.Array,
  aligned: jax.Array,
  decoded: jax.Array,
  mask: jax.Array,
  batch,
  task: str,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """CMKT's loss terms on a (global) batch, by name, and what else it logs.

  Args:
    cfg: the method's typed parameters (``config.method_params.cmkt`` or a variant's).
    method: the method; ``ot`` is computed only when it weighs it.
    outputs: ``C(pool(z_w))`` ``[B, C]``.
    z_w: the pooled weak embeddings ``[B, d]``.
    aligned: what the alignment compares: ``z_w``, or its projection for deep CCA.
    decoded: ``D(z_w)`` ``[B, L, d]``.
    mask: the weak sequence's valid steps ``[B, L]``.
    batch: the labels ``y`` and the strong targets (:func:`strong_targets`, and
      ``strong_aligned`` when the weak side is projected).
    task: ``classification | regression``.

  Raises:
    ValueError: if the weak and strong sequences do not have the same steps.
  """
  target = batch[STRONG_SEQUENCE]
  if decoded.shape[:2] != target.shape[:2]:
    raise ValueError(
      f"CMKT's translation compares the weak and strong sequences step by step: they must be "
      f"word-aligned, but E_w gives {decoded.shape[1]} steps and E_s {target.shape[1]}."
    )
  params = {"ridge": cfg.ridge} if cfg.alignment == "dcca" else {}
  strong_aligned = batch[STRONG_ALIGNED] if align_dim(cfg) else batch[STRONG_Z]
  terms = {
    "task": task_lib.task_loss(outputs, batch, task),
    "translation": translation.translation_loss(
      decoded, target, mask & batch[STRONG_MASK], cfg.translation_loss
    ),
    "alignment": alignment.alignment_loss(aligned, strong_aligned, cfg.alignment, **params),
  }
  metrics = {}
  if "ot" in method.weights:
    ot_terms, metrics = registry.structural_terms(cfg, z_w, batch[STRONG_Z][None], jnp.ones(1))
    terms["ot"] = ot_terms["ot"]
  return terms, metrics


def cmkt_loss(ctx: Context, method_name: str, model: networks.WeakModel):
  """The per-device loss of stage 2 ``(params, batch_stats, batch, rng, frozen)``.

  Deep CCA, the structural OT and ``1 - CCC`` are statistics of the batch, so every term sees
  the global batch (all-gathered over the ``data`` axis), as a student's loss does.
  """
  method = registry.get_method(method_name)
  cfg = ctx.method_params(method_name)
  weak = ctx.config.visual
  input_keys = ctx.schema.input_keys(weak)

  def loss_fn(params, batch_stats, batch, rng, frozen):
    del frozen
    parts, batch_stats = variables_lib.apply_train(
      model, params, batch_stats, rng, ctx.model_input(batch, weak)
    )
    targets = {k: v for k, v in batch.items() if k not in input_keys}
    gathered = parallel.all_gather_batch((*parts, targets))
    terms, metrics = cmkt_terms(cfg, method, *gathered, ctx.task)
    loss = objective.total(terms, method.weights, cfg)
    return loss, ({**terms, **metrics}, batch_stats)

  return loss_fn


def train_cmkt(ctx: Context, memo: Memo, stage: Stage) -> dict:
  """Stage 2 of CMKT method ``stage.subject``: the weak modality's model.

  ``C`` starts from the strong model's head (``head="frozen"``: never updated;
  ``"finetune"``: at ``stages.cmkt.head_learning_rate``), or is new (``"new"``: at the
  stage's learning rate).
  """
  method_name = stage.subject
  cfg = ctx.settings.cmkt
  method_cfg = ctx.method_params(method_name)
  weak = ctx.config.visual
  targets = stage_targets(ctx, memo, method_cfg, required_by=stage.name)
  inputs = ctx.inputs(weak)
  model = weak_model(ctx, method_cfg)
  variables = model.init(ctx.stage_rng(stage.name), ctx.first(inputs, weak))
  if method_cfg.head != "new":
    strong, _ = checkpoint.load_stage_output(
      ctx.workdir, f"unimodal_{ctx.strong}", required_by=stage.name
    )
    variables = variables_lib.graft(variables, "head", variables_lib.sub_variables(strong, "head"))
  head_rate = {"frozen": 0.0, "finetune": cfg.head_learning_rate, "new": cfg.learning_rate}
  tx = optimizers.adam(variables["params"], cfg.learning_rate, head=head_rate[method_cfg.head])
  predict_fn = jax.jit(lambda v, b: model.apply(v, ctx.model_input(b, weak))[0])
  eval_fn = ctx.selection_fn(predict_fn, inputs, ctx.config.eval_batch_size)
  table = table_lib.join(inputs, table_lib.ArrayTable(targets), ctx.targets())
  loss_fn = cmkt_loss(ctx, method_name, model)
  return ctx.fit(stage, model, variables, loss_fn, table, eval_fn, tx=tx)


def cmkt_predictor(ctx: Context, method_name: str):
  """The test-time path ``C(pool(E_w(x_w)))`` of a trained CMKT method.

  Returns ``fn(table, indices=None) -> (outputs [n, C], z_w [n, d])``, which reads the weak
  modality's columns of ``table`` alone (``schema.input_keys(visual)``): no strong input can
  reach the prediction.
  """
  stage = f"cmkt_{method_name}"
  weak = ctx.config.visual
  variables, _ = checkpoint.load_stage_output(ctx.workdir, stage)
  model = weak_model(ctx, ctx.method_params(method_name))

  @jax.jit
  def fn(values, batch):
    outputs, z_w, *_ = model.apply(values, ctx.model_input(batch, weak))
    return outputs, z_w

  keys = ctx.schema.input_keys(weak)

  def predictor(table: table_lib.Table, indices: np.ndarray | None = None):
    inputs = table.select(keys)
    return evaluation.predict(fn, variables, inputs, ctx.config.eval_batch_size, indices)

  return predictor
