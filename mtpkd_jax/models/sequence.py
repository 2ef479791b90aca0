"""Encoders for padded feature sequences `[batch, steps, d_in]` with a mask `[batch, steps]`.

Each encoder's `sequence` gives per-step outputs `[batch, steps, features]`, zero on padded
steps, and its `__call__` pools them to a single token `[batch, 1, features]`, the mean over
valid steps, so downstream code that averages tokens never sees padding. Masks are True on
valid steps, which are a prefix of each row (padding at the end); padded values never reach
the valid outputs, whatever they are (NaN included).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtpkd_jax.models import dropout as dropout_lib
from mtpkd_jax.models import transformer


def valid_mask(x: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Checks a sequence batch and its mask.

  Args:
    x: Array of shape `[batch, steps, d_in]`.
    mask: Bool array of shape `[batch, steps]`, True on valid steps; all valid if None.

  Returns:
    Bool array of shape `[batch, steps]`.

  Raises:
    ValueError: If `x` is not 3-D or `mask` does not match its first two axes.
  """
  if x.ndim != 3:
    raise ValueError(f"x must be a sequence batch [batch, steps, d_in], got shape {x.shape}.")
  if mask is None:
    return jnp.ones(x.shape[:2], bool)
  if mask.shape != x.shape[:2]:
    raise ValueError(f"mask must have x's [batch, steps] shape {x.shape[:2]}, got {mask.shape}.")
  return mask.astype(bool)


def zero_padding(x: jax.Array, mask: jax.Array) -> jax.Array:
  """`x` `[batch, steps, d]` with the steps where `mask` `[batch, steps]` is False set to 0."""
  return jnp.where(mask[..., None], x, jnp.zeros((), x.dtype))


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean over valid steps, accumulated in float32.

  Args:
    x: Array of shape `[batch, steps, d]`.
    mask: Bool array of shape `[batch, steps]`, True on valid steps.

  Returns:
    Array of shape `[batch, 1, d]` and `x`'s dtype; zero for a row without valid steps.
  """
  total = jnp.sum(zero_padding(x, mask), axis=1, keepdims=True, dtype=jnp.float32)
  count = jnp.maximum(jnp.sum(mask, axis=1), 1)[:, None, None]
  return (total / count).astype(x.dtype)


class _SequenceEncoder(nn.Module):
  """Pools a subclass's `sequence(x, mask, train)` to one token."""

  def __call__(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
    """Encodes a sequence batch to one token per sample.

    Args:
      x: Float array of shape `[batch, steps, d_in]`.
      mask: Bool array of shape `[batch, steps]`, True on valid steps (a prefix of each
        row); all valid if None.
      train: Apply dropout (needs a `"dropout"` rng when `dropout_rate > 0`).

    Returns:
      Array of shape `[batch, 1, features]`: the mean of `sequence` over valid steps (zero
      for a row without valid steps).
    """
    mask = valid_mask(x, mask)
    return masked_mean(self.sequence(x, mask, train), mask)


class _BiGRU(nn.Module):
  """Stacked bidirectional GRU layers; outputs `[batch, steps, 2 * hidden]` (forward, backward).

  The backward direction reads each row's valid part reversed (padding stays at the end), so
  its output at step `t` summarizes valid steps `t, ..., length - 1`. Outputs on padded steps
  are unspecified.
  """

  hidden: int
  num_layers: int
  dropout_rate: float
  dtype: jnp.dtype

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, train: bool) -> jax.Array:
    x = zero_padding(x.astype(self.dtype), mask)
    lengths = jnp.sum(mask, axis=1)
    cell = functools.partial(nn.GRUCell, self.hidden, dtype=self.dtype, param_dtype=jnp.float32)
    for i in range(self.num_layers):
      forward, backward = cell(name=f"forward{i + 1}"), cell(name=f"backward{i + 1}")
      x = nn.Bidirectional(nn.RNN(forward), nn.RNN(backward))(x, seq_lengths=lengths)
      x = dropout_lib.Dropout(self.dropout_rate)(x, deterministic=not train)
    return x


class TransformerEncoder(_SequenceEncoder):
  """Transformer encoder over a padded sequence; attention never reaches padded steps.

  Steps are projected to `features`, sinusoidal positions are added, and `num_layers`
  post-LayerNorm encoder layers (`transformer.EncoderBlock`) follow, each masking padded keys.

  Attributes:
    features: Output width `d`; even.
    num_layers: Encoder layers.
    num_heads: Attention heads; must divide `features`.
    mlp_features: Feed-forward width; `features` if None.
    dropout_rate: Dropout after the positions and in the encoder layers.
    dtype: Compute dtype; parameters are float32.
  """

  features: int = 256
  num_layers: int = 2
  num_heads: int = 4
  mlp_features: int | None = None
  dropout_rate: float = 0.1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def sequence(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
    """Per-step outputs.

    Args:
      x: Float array of shape `[batch, steps, d_in]`.
      mask: Bool array of shape `[batch, steps]`, True on valid steps; all valid if None.
      train: Apply dropout (needs a `"dropout"` rng when `dropout_rate > 0`).

    Returns:
      Array of shape `[batch, steps, features]`, zero on padded steps.
    """
    mask = valid_mask(x, mask)
    x = zero_padding(x.astype(self.dtype), mask)
    x = nn.Dense(self.features, dtype=self.dtype, param_dtype=jnp.float32, name="embed")(x)
    x = x + transformer.sinusoidal_positions(x.shape[1], self.features).astype(self.dtype)
    x = dropout_lib.Dropout(self.dropout_rate)(x, deterministic=not train)
    for i in range(self.num_layers):
      x = transformer.EncoderBlock(
        self.num_heads,
        self.mlp_features or self.features,
        self.dropout_rate,
        self.dtype,
        name=f"layer{i + 1}",
      )(x, train=train, mask=mask)
    return zero_padding(x, mask)


class BiGRUEncoder(_SequenceEncoder):
  """Bidirectional GRU over a padded sequence, both directions projected to `features`.

  Attributes:
    features: Output width `d`.
    hidden: GRU state width of each direction; `features` if None.
    num_layers: Stacked bidirectional layers.
    dropout_rate: Dropout after every bidirectional layer.
    dtype: Compute dtype; parameters are float32.
  """

  features: int = 256
  hidden: int | None = None
  num_layers: int = 1
  dropout_rate: float = 0.1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def sequence(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
    """Per-step outputs.

    Args:
      x: Float array of shape `[batch, steps, d_in]`.
      mask: Bool array of shape `[batch, steps]`, True on valid steps (a prefix of each
        row); all valid if None.
      train: Apply dropout (needs a `"dropout"` rng when `dropout_rate > 0`).

    Returns:
      Array of shape `[batch, steps, features]`, zero on padded steps.
    """
    mask = valid_mask(x, mask)
    x = _BiGRU(
      self.hidden or self.features, self.num_layers, self.dropout_rate, self.dtype, name="gru"
    )(x, mask, train)
    x = nn.Dense(self.features, dtype=self.dtype, param_dtype=jnp.float32, name="project")(x)
    return zero_padding(x, mask)


class GRUTransformerEncoder(_SequenceEncoder):
  """A bidirectional GRU followed by a transformer encoder (CMKT's sequence encoder).

  The GRU's concatenated directions are the transformer's input (its input projection maps
  them to `features`).

  Attributes:
    features: Output width `d`; even.
    hidden: GRU state width of each direction; `features` if None.
    gru_layers: Stacked bidirectional GRU layers.
    num_layers: Transformer encoder layers.
    num_heads: Attention heads; must divide `features`.
    mlp_features: Transformer feed-forward width; `features` if None.
    dropout_rate: Dropout in both parts.
    dtype: Compute dtype; parameters are float32.
  """

  features: int = 256
  hidden: int | None = None
  gru_layers: int = 1
  num_layers: int = 2
  num_heads: int = 4
  mlp_features: int | None = None
  dropout_rate: float = 0.1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def sequence(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
    """Per-step outputs.

    Args:
      x: Float array of shape `[batch, steps, d_in]`.
      mask: Bool array of shape `[batch, steps]`, True on valid steps (a prefix of each
        row); all valid if None.
      train: Apply dropout (needs a `"dropout"` rng when `dropout_rate > 0`).

    Returns:
      Array of shape `[batch, steps, features]`, zero on padded steps.
    """
    mask = valid_mask(x, mask)
    x = _BiGRU(
      self.hidden or self.features, self.gru_layers, self.dropout_rate, self.dtype, name="gru"
    )(x, mask, train)
    return TransformerEncoder(
      self.features,
      self.num_layers,
      self.num_heads,
      self.mlp_features,
      self.dropout_rate,
      self.dtype,
      name="transformer",
    ).sequence(x, mask, train)
