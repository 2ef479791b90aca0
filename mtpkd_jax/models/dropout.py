"""Dropout whose masks do not depend on how a batch is split over devices.

Each example's mask is drawn from `fold_in(key, global_example_index)`. Inside the
data-parallel step (a bound `"data"` axis) row `r` of device `i` is global example
`i * local_batch + r`; outside any mapped axis (a plain call, a single-device test) it is
`r`. With one key per step and layer (Flax's `make_rng`, from a step key that carries no
device index), 1, 2, 4 or 8 devices draw the same masks for the same global batch.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# The data-parallel mesh axis (`mtpkd_jax.train.parallel.DATA_AXIS`).
DATA_AXIS = "data"


def global_example_index(local_batch: int, axis_name: str = DATA_AXIS) -> jax.Array:
  """Global indices `[local_batch]` of this device's rows of the batch.

  Args:
    local_batch: Rows of the batch on this device.
    axis_name: The mapped device axis; when it is not bound, the rows are the whole batch.

  Returns:
    Int32 array `axis_index * local_batch + arange(local_batch)`.
  """
  try:
    offset = lax.axis_index(axis_name) * local_batch
  except NameError:  # Not inside a mapped step: this is the whole batch.
    offset = 0
  return offset + jnp.arange(local_batch, dtype=jnp.int32)


def example_keys(key: jax.Array, local_batch: int, axis_name: str = DATA_AXIS) -> jax.Array:
  """Each of this device's examples' keys, `fold_in(key, global_example_index)`: `[local_batch]`."""
  return jax.vmap(jax.random.fold_in, (None, 0))(key, global_example_index(local_batch, axis_name))


def per_example_dropout(
  key: jax.Array, x: jax.Array, rate: float, axis_name: str = DATA_AXIS
) -> jax.Array:
  """Inverted dropout of `x`, each example's mask drawn from its own key.

  Args:
    key: This layer's key for the step (the same on every device).
    x: Array of shape `[batch, ...]`; the leading axis is the (local) batch.
    rate: Probability of zeroing an element, in `[0, 1)`.
    axis_name: See `global_example_index`.

  Returns:
    `x * keep / (1 - rate)`, same shape and dtype as `x`, where `keep[b]` is
    `bernoulli(fold_in(key, global_index[b]), 1 - rate, x.shape[1:])`.
  """
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"`rate` must be in [0, 1), got {rate}.")
  keys = example_keys(key, x.shape[0], axis_name)
  keep = jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - rate, x.shape[1:]))(keys)
  return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros_like(x))


class Dropout(nn.Module):
  """`nn.Dropout` with per-example masks (see the module docstring).

  Attributes:
    rate: Probability of zeroing an element.
    axis_name: The data-parallel axis giving the global example index.
  """

  rate: float
  axis_name: str = DATA_AXIS

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    """Drops elements of `x` (`[batch, ...]`) unless `deterministic`; needs a `"dropout"` rng."""
    if deterministic or self.rate == 0.0:
      return x
    return per_example_dropout(self.make_rng("dropout"), x, self.rate, self.axis_name)


def attention_with_dropout(
  query: jax.Array,
  key: jax.Array,
  value: jax.Array,
  mask: jax.Array | None = None,
  dropout_rng: jax.Array | None = None,
  dropout_rate: float = 0.0,
  deterministic: bool = True,
  dtype: jnp.dtype | None = None,
  precision: lax.PrecisionLike = None,
) -> jax.Array:
  """`nn.dot_product_attention` with per-example dropout of the attention weights.

  An `attention_fn` for `nn.MultiHeadDotProductAttention`; shapes as there (query
  `[batch, q_length, heads, head_dim]`, key and value `[batch, kv_length, heads,
  head_dim]`), returning `[batch, q_length, heads, head_dim]`.
  """
  weights = nn.dot_product_attention_weights(
    query, key, mask=mask, deterministic=True, dtype=dtype, precision=precision
  )
  if not deterministic and dropout_rate > 0.0:
    weights = per_example_dropout(dropout_rng, weights, dropout_rate)
  return jnp.einsum("...hqk,...khd->...qhd", weights, value, precision=precision)
