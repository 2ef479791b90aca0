"""Transformer pieces shared by the audio encoder and the fusion block.

Attention always runs over the token axis of each sample (`[batch, tokens, d]`, batch
first), so no sample ever attends to another sample of its batch.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtpkd_jax.models import dropout as dropout_lib


def sinusoidal_positions(length: int, features: int) -> jax.Array:
  """Fixed sine/cosine position encodings (Vaswani et al., 2017).

  Args:
    length: Number of positions.
    features: Encoding width; even.

  Returns:
    Float32 array of shape `[length, features]`: `sin` in the even columns and `cos` in the
    odd ones, at wavelengths from `2 pi` to `10000 * 2 pi`.
  """
  if features % 2:
    raise ValueError(f"features must be even, got {features}.")
  positions = jnp.arange(length, dtype=jnp.float32)[:, None]
  inv_freq = jnp.exp(-jnp.log(10000.0) * jnp.arange(0, features, 2) / features)
  angles = positions * inv_freq[None, :]
  return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(length, features)


class EncoderBlock(nn.Module):
  """Post-LayerNorm transformer layer, self- or cross-attention (PyTorch's default layout).

  `x = LN(x + Drop(MHA(x, context)))`, then `x = LN(x + Drop(W2 Drop(relu(W1 x))))`, as in
  `torch.nn.TransformerEncoderLayer(norm_first=False)`, with attention-weight dropout too.
  Every dropout mask is drawn per example (`dropout.per_example_dropout`), so it does not
  depend on how the batch is split over devices.

  Attributes:
    num_heads: Attention heads; must divide the token width.
    mlp_features: Hidden width of the feed-forward network.
    dropout_rate: Dropout on attention weights and after every sublayer.
    dtype: Compute dtype; parameters are float32.
  """

  num_heads: int
  mlp_features: int
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    context: jax.Array | None = None,
    train: bool = False,
    mask: jax.Array | None = None,
  ) -> jax.Array:
    """Updates the query tokens.

    Args:
      x: Query tokens of shape `[batch, length, d]`.
      context: Key/value tokens of shape `[batch, context_length, d]`; `x` itself (self-
        attention) if None.
      train: Apply dropout (needs a `"dropout"` rng when `dropout_rate > 0`).
      mask: Bool key-padding mask of shape `[batch, context_length]`, True on the keys that
        may be attended to; all keys if None.

    Returns:
      Array of shape `[batch, length, d]`.
    """
    deterministic = not train
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    norm = functools.partial(nn.LayerNorm, epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32)
    dropout = functools.partial(dropout_lib.Dropout, self.dropout_rate)

    y = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads,
      dropout_rate=self.dropout_rate,
      deterministic=deterministic,
      dtype=self.dtype,
      param_dtype=jnp.float32,
      attention_fn=dropout_lib.attention_with_dropout,
      name="attention",
    )(x, x if context is None else context, mask=None if mask is None else mask[:, None, None, :])
    x = norm(name="attention_norm")(x + dropout()(y, deterministic))
    y = dense(self.mlp_features, name="mlp_in")(x)
    y = dense(x.shape[-1], name="mlp_out")(dropout()(nn.relu(y), deterministic))
    return norm(name="mlp_norm")(x + dropout()(y, deterministic))
