"""Boundary checks shared by the loss modules: clear errors that name the offending argument."""

from collections.abc import Sequence

import jax

_AXIS_NAMES = {0: "batch size", 1: "width"}


def check_rank(name: str, x: jax.Array, rank: int) -> None:
  """Raises if `x` does not have `rank` dimensions.

  Args:
    name: the argument's name, quoted in the error.
    x: the array to check.
    rank: the required number of dimensions.

  Raises:
    ValueError: if `x.ndim != rank`.
  """
  if x.ndim != rank:
    raise ValueError(f"`{name}` must have rank {rank}, got shape {x.shape}.")


def check_same_shape(name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> None:
  """Raises if `a` and `b` differ in shape.

  Args:
    name_a: the first argument's name, quoted in the error.
    a: the first array.
    name_b: the second argument's name, quoted in the error.
    b: the second array.

  Raises:
    ValueError: if `a.shape != b.shape`.
  """
  if a.shape != b.shape:
    raise ValueError(
      f"`{name_a}` and `{name_b}` must have the same shape, got {a.shape} and {b.shape}."
    )


def check_matrices(
  name_a: str, a: jax.Array, name_b: str, b: jax.Array, axes: Sequence[int] = (0, 1)
) -> None:
  """Raises unless `a` and `b` are both rank 2 and agree along `axes`.

  Args:
    name_a: the first argument's name, quoted in the error.
    a: the first array, expected of shape `[batch, width]`.
    name_b: the second argument's name, quoted in the error.
    b: the second array, expected of shape `[batch, width]`.
    axes: the axes that must match: `(0, 1)` same shape, `(0,)` same batch size, `(1,)`
      same width.

  Raises:
    ValueError: on a rank other than 2, or a mismatch along one of `axes`.
  """
  check_rank(name_a, a, 2)
  check_rank(name_b, b, 2)
  for axis in axes:
    if a.shape[axis] != b.shape[axis]:
      raise ValueError(
        f"`{name_a}` and `{name_b}` must have the same {_AXIS_NAMES[axis]}, "
        f"got shapes {a.shape} and {b.shape}."
      )
