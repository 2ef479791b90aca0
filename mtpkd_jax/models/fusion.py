"""The MT-PKDOT fusion block, generalised from two to M modalities."""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtpkd_jax.models import dropout, transformer


class Gate(nn.Module):
  """Input-dependent convex mix of M modality vectors, per feature.

  Scores `s = W [x_1; ...; x_M] + b` give M - 1 scores per feature, the last modality's
  score is fixed to 0, and the weights are a softmax over modalities. For M = 2 this is
  exactly `g = sigmoid(W [x_1; x_2] + b)`, `z = g * x_1 + (1 - g) * x_2`; for M > 2 it is
  a softmax over per-modality scores, with the last score as the (identifying) reference,
  which loses nothing since softmax is shift-invariant.

  Attributes:
    dtype: Compute dtype; parameters are float32 and the softmax runs in float32.
  """

  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, xs: Sequence[jax.Array]) -> jax.Array:
    """Mixes the modality vectors.

    Args:
      xs: M >= 2 arrays of shape `[batch, d]`.

    Returns:
      `z = sum_m w_m * x_m` of shape `[batch, d]`, with weights `w` of shape
      `[batch, M, d]` summing to one over modalities.
    """
    x = jnp.stack(xs, axis=1)  # [batch, M, d]
    batch, m, d = x.shape
    scores = nn.Dense((m - 1) * d, dtype=self.dtype, param_dtype=jnp.float32, name="scores")(
      x.reshape(batch, m * d)
    )
    scores = jnp.concatenate(
      [scores.reshape(batch, m - 1, d).astype(jnp.float32), jnp.zeros((batch, 1, d))], axis=1
    )
    weights = jax.nn.softmax(scores, axis=1).astype(self.dtype)
    return jnp.sum(weights * x.astype(self.dtype), axis=1)


class FusionBlock(nn.Module):
  """Joint (teacher) or student fusion: `F(tokens_1, ..., tokens_M) -> (outputs, z)`.

  Per modality: a transformer encoder layer over its own tokens, then a cross-attention
  layer whose queries are those tokens and whose keys/values are the other modalities'
  tokens (concatenated along the token axis when M > 2); mean over tokens; a `Gate` mixes
  the M pooled vectors into `z`; a linear layer maps `z` to the outputs. Every attention
  runs over one sample's own tokens, so a sample's output never depends on its batch-mates.

  Attributes:
    num_outputs: Classes (logits) or regression targets.
    num_heads: Attention heads; must divide `d`.
    mlp_features: Feed-forward width of every layer; `d` if None.
    dropout_rate: Dropout in the attention layers.
    modality_dropout: In training, the probability that one modality, drawn uniformly, has
      all its tokens zeroed for an example (at most one modality per example, never all).
      Frozen backbones fit their training examples, so a fusion trained on their tokens can
      reach zero training loss through one modality alone and ignore the others; dropping
      modalities makes every modality's tokens carry the task on their own.
    dtype: Compute dtype; parameters are float32.
  """

  num_outputs: int
  num_heads: int = 2
  mlp_features: int | None = None
  dropout_rate: float = 0.1
  modality_dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(
    self, tokens: Sequence[jax.Array], train: bool = False
  ) -> tuple[jax.Array, jax.Array]:
    """Fuses the modalities.

    Args:
      tokens: M >= 2 arrays, modality `m` of shape `[batch, L_m, d]`; a pooled embedding
        `[batch, d]` (e.g. the T-Net's output) counts as a single token.
      train: Apply dropout (needs a `"dropout"` rng when `dropout_rate > 0`).

    Returns:
      `(outputs, z)`: outputs of shape `[batch, num_outputs]` and the fused vector `z` of
      shape `[batch, d]` (what is distilled).
    """
    if len(tokens) < 2:
      raise ValueError(f"FusionBlock needs at least 2 modalities, got {len(tokens)}.")
    tokens = [t[:, None, :] if t.ndim == 2 else t for t in tokens]
    if any(t.ndim != 3 for t in tokens) or len({(t.shape[0], t.shape[-1]) for t in tokens}) != 1:
      raise ValueError(
        "Expected tokens [batch, L_m, d] with a common batch and d, got "
        f"{[t.shape for t in tokens]}."
      )
    d = tokens[0].shape[-1]
    if train and self.modality_dropout > 0.0:
      tokens = drop_modalities(self.make_rng("dropout"), tokens, self.modality_dropout)
    block = functools.partial(
      transformer.EncoderBlock,
      self.num_heads,
      self.mlp_features or d,
      self.dropout_rate,
      self.dtype,
    )
    tokens = [
      block(name=f"self_attention{m}")(t.astype(self.dtype), train=train)
      for m, t in enumerate(tokens)
    ]
    pooled = []
    for m, t in enumerate(tokens):
      others = jnp.concatenate(tokens[:m] + tokens[m + 1 :], axis=1)
      pooled.append(block(name=f"cross_attention{m}")(t, others, train=train).mean(axis=1))
    z = Gate(self.dtype, name="gate")(pooled)
    outputs = nn.Dense(self.num_outputs, dtype=self.dtype, param_dtype=jnp.float32, name="head")(z)
    return outputs, z


def drop_modalities(key: jax.Array, tokens: Sequence[jax.Array], rate: float) -> list[jax.Array]:
  """Zeroes one modality's tokens per example with probability ``rate`` (see `FusionBlock`).

  Args:
    key: This step's key (the same on every device); example ``b``'s draw comes from
      ``fold_in(key, global index of b)``, so it does not depend on the device layout.
    tokens: M >= 2 arrays ``[batch, L_m, d]``.
    rate: Probability in ``[0, 1]`` that an example loses a modality.

  Returns:
    The M arrays, with example ``b``'s tokens of modality ``m`` zeroed when ``b`` drops and
    ``m`` is the modality it drew.
  """
  if not 0.0 <= rate <= 1.0:
    raise ValueError(f"`modality_dropout` must be in [0, 1], got {rate}.")
  batch = tokens[0].shape[0]
  keys = dropout.example_keys(key, batch)
  drops = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, 0), rate))(keys)
  which = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 1), (), 0, len(tokens)))(keys)
  return [
    jnp.where((drops & (which == m))[:, None, None], jnp.zeros_like(t), t)
    for m, t in enumerate(tokens)
  ]
