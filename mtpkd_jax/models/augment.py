"""Clip augmentation in training, drawn per example so it does not depend on the devices.

Like :mod:`mtpkd_jax.models.dropout`, each example's draw comes from
`fold_in(key, global_example_index)`, so 1, 2, 4 or 8 devices augment a global batch the
same way.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtpkd_jax.models import dropout as dropout_lib


def augment_clip(
  key: jax.Array, clip: jax.Array, reverse: float, mirror: float, shift: int
) -> jax.Array:
  """One clip `[time, height, width, channels]`, augmented as a whole.

  Args:
    key: This example's key.
    clip: The clip.
    reverse: Probability of playing the clip backwards.
    mirror: Probability of flipping every frame left to right.
    shift: Largest translation in pixels, along each spatial axis, drawn uniformly from
      `[-shift, shift]` and applied to every frame alike; the vacated border repeats the
      edge pixels.

  Returns:
    The augmented clip, same shape and dtype.
  """
  k_reverse, k_mirror, k_shift = jax.random.split(key, 3)
  clip = jnp.where(jax.random.bernoulli(k_reverse, reverse), clip[::-1], clip)
  clip = jnp.where(jax.random.bernoulli(k_mirror, mirror), clip[:, :, ::-1], clip)
  if shift:
    padded = jnp.pad(clip, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    dy, dx = jax.random.randint(k_shift, (2,), 0, 2 * shift + 1)
    clip = jax.lax.dynamic_slice(padded, (0, dy, dx, 0), clip.shape)
  return clip


class ClipAugment(nn.Module):
  """Augments clips `[batch, time, height, width, channels]` in training (see `augment_clip`).

  Attributes:
    reverse: Probability of playing a clip backwards.
    mirror: Probability of flipping a clip left to right.
    shift: Largest translation of a clip, in pixels.
    axis_name: The data-parallel axis giving the global example index.
  """

  reverse: float = 0.0
  mirror: float = 0.0
  shift: int = 0
  axis_name: str = dropout_lib.DATA_AXIS

  @nn.compact
  def __call__(self, video: jax.Array, train: bool) -> jax.Array:
    """`video` augmented when `train` (needs a `"dropout"` rng), else as it is."""
    for name in ("reverse", "mirror"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"`{name}` must be a probability in [0, 1], got {getattr(self, name)}.")
    if self.shift < 0:
      raise ValueError(f"`shift` must be a number of pixels >= 0, got {self.shift}.")
    if not train or not (self.reverse or self.mirror or self.shift):
      return video
    keys = dropout_lib.example_keys(self.make_rng("dropout"), video.shape[0], self.axis_name)
    return jax.vmap(augment_clip, (0, 0, None, None, None))(
      keys, video, self.reverse, self.mirror, self.shift
    )
