"""Small heads on pooled embeddings: the T-Net, the stage-2 adapters and linear heads."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class TNet(nn.Module):
  """Hallucination net `H: f_v -> f̂_p`, an MLP with ReLU between its layers.

  Attributes:
    features: Output width (the privileged embedding's `d`); the input width if None.
    hidden_features: Widths of the hidden layers.
    dtype: Compute dtype; parameters are float32.
  """

  features: int | None = None
  hidden_features: Sequence[int] = (512,)
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps `[..., d_in]` visual embeddings to `[..., features]` privileged ones."""
    out_features = self.features or x.shape[-1]
    for width in self.hidden_features:
      x = nn.relu(nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32)(x))
    return nn.Dense(out_features, dtype=self.dtype, param_dtype=jnp.float32)(x)


class Adapter(nn.Module):
  """Stage-2 adapter `A_m`: linear `d -> d/2 -> d`, with no nonlinearity in between.

  Attributes:
    dtype: Compute dtype; parameters are float32.
  """

  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps `[..., d]` to `[..., d]` through a `d // 2` bottleneck."""
    d = x.shape[-1]
    x = nn.Dense(d // 2, dtype=self.dtype, param_dtype=jnp.float32, name="down")(x)
    return nn.Dense(d, dtype=self.dtype, param_dtype=jnp.float32, name="up")(x)


class Head(nn.Module):
  """Linear classifier/regressor `h_m`.

  Attributes:
    num_outputs: Classes (logits) or regression targets.
    dtype: Compute dtype; parameters are float32.
  """

  num_outputs: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps `[..., d]` to `[..., num_outputs]`."""
    return nn.Dense(self.num_outputs, dtype=self.dtype, param_dtype=jnp.float32)(x)
