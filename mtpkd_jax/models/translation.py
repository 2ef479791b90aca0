"""CMKT's decoder `D`: translates the weak encoder's sequence into the strong encoder's width.

`D` maps `z_w` `[batch, steps, d_w]` to `[batch, steps, d_s]`, step by step (`"mlp"`) or with
masked self-attention over the sequence (`"transformer"`), so that `L_tr(D(z_w), E_s(x_s))`
compares the two modalities step by step on word-aligned sequences. Outputs are zero on
padded steps, and padded inputs never reach the valid outputs.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtpkd_jax.models import dropout as dropout_lib
from mtpkd_jax.models import sequence, transformer

KINDS = ("mlp", "transformer")


class SequenceDecoder(nn.Module):
  """A small per-step MLP or transformer from one sequence width to another.

  `"mlp"`: `num_layers` hidden layers (Dense to `hidden`, ReLU, dropout) then a Dense layer
  to `features`; `num_layers = 0` is a linear map. `"transformer"`: a Dense layer to
  `hidden`, `num_layers` post-LayerNorm encoder layers (`transformer.EncoderBlock`, padded
  keys masked), then a Dense layer to `features`, so the output's scale is not tied to the
  LayerNorm. No positions are added: `z_w` comes from a sequence encoder that has them.

  Attributes:
    features: Output width `d_s`, the strong encoder's.
    kind: `"mlp"` or `"transformer"`.
    hidden: Hidden width; `features` if None. For `"transformer"` the attention width,
      divisible by `num_heads`.
    num_layers: Hidden layers (`"mlp"`) or encoder layers (`"transformer"`).
    num_heads: Attention heads (`"transformer"`).
    dropout_rate: Dropout after every hidden layer (`"mlp"`) or inside the encoder layers.
    dtype: Compute dtype; parameters are float32.
  """

  features: int
  kind: str = "mlp"
  hidden: int | None = None
  num_layers: int = 1
  num_heads: int = 2
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, mask: jax.Array | None = None, train: bool = False) -> jax.Array:
    """Translates a sequence batch.

    Args:
      z: Float array of shape `[batch, steps, d_w]`.
      mask: Bool array of shape `[batch, steps]`, True on valid steps; all valid if None.
      train: Apply dropout (needs a `"dropout"` rng when `dropout_rate > 0`).

    Returns:
      Array of shape `[batch, steps, features]`, zero on padded steps.

    Raises:
      ValueError: on an unknown `kind`, a negative `num_layers`, or shapes as
        `sequence.valid_mask`.
    """
    if self.kind not in KINDS:
      raise ValueError(f"`kind` must be one of {KINDS}, got {self.kind!r}.")
    if self.num_layers < 0:
      raise ValueError(f"`num_layers` must be non-negative, got {self.num_layers}.")
    mask = sequence.valid_mask(z, mask)
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    hidden = self.hidden or self.features
    z = sequence.zero_padding(z.astype(self.dtype), mask)
    if self.kind == "mlp":
      for i in range(self.num_layers):
        z = nn.relu(dense(hidden, name=f"dense{i + 1}")(z))
        z = dropout_lib.Dropout(self.dropout_rate)(z, deterministic=not train)
    else:
      z = dense(hidden, name="embed")(z)
      for i in range(self.num_layers):
        z = transformer.EncoderBlock(
          self.num_heads, hidden, self.dropout_rate, self.dtype, name=f"layer{i + 1}"
        )(z, train=train, mask=mask)
    return sequence.zero_padding(dense(self.features, name="out")(z), mask)
