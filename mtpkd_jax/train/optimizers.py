"""Optimizers of the stages: Adam, with its own learning rate for chosen submodules."""

from __future__ import annotations

import optax


def adam(params, learning_rate: float, **special: float) -> optax.GradientTransformation:
  """Adam at ``learning_rate``, and at ``special[k]`` for the top-level parameters ``k``."""
  if not special:
    return optax.adam(learning_rate)
  return optax.multi_transform(
    {"default": optax.adam(learning_rate), **{k: optax.adam(lr) for k, lr in special.items()}},
    {k: k if k in special else "default" for k in params},
  )
