"""The training state of one stage: what is trained and checkpointed, nothing else.

The rng is deliberately not a field: the host loop keeps one base key per stage, and the step
derives each update's key from it with `fold_in(rng, state.step)`, so a resumed run draws the
same randomness as an uninterrupted one without checkpointing the key. Frozen inputs (e.g. a
teacher) are not fields either; they are passed to the step separately.
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import optax
from flax import struct
from flax.training import train_state


class TrainState(train_state.TrainState):
  """`flax.training.train_state.TrainState` plus BatchNorm statistics.

  Attributes:
    step: int32 scalar, number of updates applied so far.
    apply_fn: The model's `apply` (static, not saved).
    params: Trainable parameters (float32).
    tx: The optax transformation (static, not saved).
    opt_state: The optimizer state.
    batch_stats: Mutable `batch_stats` collection; `{}` for models without BatchNorm.
  """

  batch_stats: Any = struct.field(default_factory=dict)


def create_train_state(
  apply_fn: Callable[..., Any],
  variables: Mapping[str, Any],
  tx: optax.GradientTransformation,
) -> TrainState:
  """Builds a fresh state from a model's initialised variables.

  Args:
    apply_fn: The model's `apply`.
    variables: `model.init(...)` output: a `params` collection and, optionally, a
      `batch_stats` collection. Other collections are not supported.
    tx: Optimizer.

  Returns:
    A `TrainState` at step 0 (an int32 array, so that it checkpoints and restores as one).

  Raises:
    ValueError: If `variables` has collections other than `params` and `batch_stats`.
  """
  extra = set(variables) - {"params", "batch_stats"}
  if extra:
    raise ValueError(f"Unsupported variable collections {sorted(extra)}.")
  state = TrainState.create(
    apply_fn=apply_fn,
    params=variables["params"],
    tx=tx,
    batch_stats=variables.get("batch_stats", {}),
  )
  return state.replace(step=jnp.zeros((), jnp.int32))
