"""Audio encoder: feature sequences `[batch, steps, features]` to tokens `[batch, L, d]`."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtpkd_jax.models import dropout, transformer


class AudioTransformer(nn.Module):
  """A small transformer encoder over frame-level audio features (e.g. log-mel, eGeMAPS).

  Consecutive groups of `patch_size` frames are projected to `features`, sinusoidal
  positions are added, and `num_layers` post-LayerNorm encoder layers follow.

  Attributes:
    features: Token width `d`.
    num_layers: Encoder layers.
    num_heads: Attention heads; must divide `features`.
    mlp_features: Feed-forward width; `features` if None.
    dropout_rate: Dropout in the encoder layers.
    patch_size: Frames merged into one token (a trailing remainder is dropped).
    dtype: Compute dtype; parameters are float32.
  """

  features: int = 512
  num_layers: int = 2
  num_heads: int = 4
  mlp_features: int | None = None
  dropout_rate: float = 0.1
  patch_size: int = 1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Encodes a feature sequence.

    Args:
      x: Float array of shape `[batch, steps, input_features]`.
      train: Apply dropout (needs a `"dropout"` rng when `dropout_rate > 0`).

    Returns:
      Tokens of shape `[batch, steps // patch_size, features]`.
    """
    if x.ndim != 3:
      raise ValueError(f"Expected audio features [batch, steps, features], got {x.shape}.")
    x = nn.Conv(
      self.features,
      (self.patch_size,),
      strides=self.patch_size,
      padding="VALID",
      dtype=self.dtype,
      param_dtype=jnp.float32,
      name="embed",
    )(x.astype(self.dtype))
    x = x + transformer.sinusoidal_positions(x.shape[1], self.features).astype(self.dtype)
    x = dropout.Dropout(self.dropout_rate)(x, deterministic=not train)
    for i in range(self.num_layers):
      x = transformer.EncoderBlock(
        self.num_heads,
        self.mlp_features or self.features,
        self.dropout_rate,
        self.dtype,
        name=f"layer{i + 1}",
      )(x, train=train)
    return x
