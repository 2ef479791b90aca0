"""Optimizers of the stages: Adam, with its own learning rate for chosen submodules."""

from __future__ import annotations

import optax


def _adam(learning_rate: float) -> optax.GradientTransformation:
  """Adam; a zero rate leaves the parameters exactly as they are."""
  return optax.set_to_zero() if learning_rate == 0 else optax.adam(learning_rate)


def adam(params, learning_rate: float, **special: float) -> optax.GradientTransformation:
  """Adam at ``learning_rate``, and at ``special[k]`` for the top-level parameters ``k``.

  A rate of ``0`` freezes its parameters: they get no update at all (and no Adam state).
  """
  if not special:
    return _adam(learning_rate)
  return optax.multi_transform(
    {"default": _adam(learning_rate), **{k: _adam(lr) for k, lr in special.items()}},
    {k: k if k in special else "default" for k in params},
  )
