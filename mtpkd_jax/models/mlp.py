"""Vector encoder: pre-extracted feature vectors `[batch, d_in]` to one token `[batch, 1, d]`."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtpkd_jax.models import dropout as dropout_lib


class MLPEncoder(nn.Module):
  """A multilayer perceptron over feature vectors.

  `num_layers - 1` hidden layers (Dense, ReLU, dropout) of width `hidden`, then a Dense layer
  to `features`.

  Attributes:
    features: Output width `d`.
    hidden: Hidden width; `features` if None.
    num_layers: Dense layers; at least 1.
    dropout_rate: Dropout after every hidden layer.
    dtype: Compute dtype; parameters are float32.
  """

  features: int = 256
  hidden: int | None = None
  num_layers: int = 2
  dropout_rate: float = 0.1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
    """Encodes a batch of vectors.

    Args:
      x: Float array of shape `[batch, d_in]`.
      mask: Ignored: vectors have no padding. Accepted so that every encoder of
        pre-extracted features is called alike.
      train: Apply dropout (needs a `"dropout"` rng when `dropout_rate > 0`).

    Returns:
      Array of shape `[batch, 1, features]`.

    Raises:
      ValueError: If `x` is not 2-D or `num_layers < 1`.
    """
    del mask
    if x.ndim != 2:
      raise ValueError(f"x must be a vector batch [batch, d_in], got shape {x.shape}.")
    if self.num_layers < 1:
      raise ValueError(f"num_layers must be at least 1, got {self.num_layers}.")
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    x = x.astype(self.dtype)
    for i in range(self.num_layers - 1):
      x = dense(self.hidden or self.features, name=f"dense{i + 1}")(x)
      x = dropout_lib.Dropout(self.dropout_rate)(nn.relu(x), deterministic=not train)
    return dense(self.features, name=f"dense{self.num_layers}")(x)[:, None, :]
