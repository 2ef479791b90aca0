"""Batch similarity structure: cosine-similarity matrices, anchors, centroid term."""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp

ANCHOR_MODES = ("least", "most", "all")


def cosine_similarity(z: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
  """Cosine similarities between the rows of ``z``.

  Args:
    z: Array of shape ``[..., B, d]``.
    eps: norms below this are clamped, so zero vectors give zero similarity (and finite
      gradients) instead of NaN.

  Returns:
    Array of shape ``[..., B, B]``.
  """
  norm = jnp.sqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), eps**2))
  unit = z / norm
  return unit @ jnp.swapaxes(unit, -1, -2)


def shift_nonnegative(s: jnp.ndarray) -> jnp.ndarray:
  """Subtracts the global minimum of each ``[..., B, B]`` matrix, making it non-negative."""
  return s - jnp.min(s, axis=(-2, -1), keepdims=True)


def check_anchors(mode: str, k, batch: int) -> None:
  """Raises a ``ValueError`` unless ``mode`` is an anchor mode and ``k`` fits a batch of ``batch``.

  ``k`` must be an int in ``[1, batch)``; it is not read for ``all``.
  """
  if mode not in ANCHOR_MODES:
    raise ValueError(f"`anchors` must be one of {ANCHOR_MODES}, got {mode!r}.")
  if mode != "all" and not (isinstance(k, numbers.Integral) and 1 <= k < batch):
    raise ValueError(f"`k` must be an int in [1, {batch}) for batch size {batch}, got {k!r}.")


def select_anchors(
  s_teacher: jnp.ndarray, s_student: jnp.ndarray, mode: str, k: int
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Picks ``k`` anchor columns per row on the teacher matrix and applies them to both.

  ``least`` takes each row's ``k`` least similar columns (what the research release does),
  ``most`` the ``k`` most similar (the paper's "top-k"; a row's own column is among them),
  ``all`` keeps every column. Columns are ordered by teacher similarity (most similar first
  for ``most``, least similar first for ``least``), so coordinate ``j`` of every row means
  "its ``j``-th anchor". The choice depends on the teacher only and carries no gradient.

  Args:
    s_teacher: Array of shape ``[..., B, B]``.
    s_student: Array of shape ``[..., B, B]``, broadcastable against ``s_teacher``.
    mode: ``least | most | all``.
    k: anchors per row, ``1 <= k < B`` (ignored for ``all``).

  Returns:
    ``(teacher_points, student_points)``, each of shape ``[..., B, k]`` (``[..., B, B]``
    for ``all``): one point per sample, in the space of its anchor similarities.
  """
  check_anchors(mode, k, s_teacher.shape[-1])
  if mode == "all":
    return s_teacher, jnp.broadcast_to(s_student, s_teacher.shape)
  scores = jax.lax.stop_gradient(-s_teacher if mode == "least" else s_teacher)
  _, idx = jax.lax.top_k(scores, k)
  s_student = jnp.broadcast_to(s_student, s_teacher.shape)
  return (
    jnp.take_along_axis(s_teacher, idx, axis=-1),
    jnp.take_along_axis(s_student, idx, axis=-1),
  )


def anchored_diameter_bound(num_columns: int) -> float:
  """A bound on the diameter of anchored clouds of ``num_columns`` coordinates.

  Cosine similarities lie in ``[-1, 1]``, so after :func:`shift_nonnegative` every entry,
  and every coordinate of :func:`select_anchors`' points, lies in ``[0, 2]``: the two clouds'
  joint bounding box has a diagonal of at most ``2 sqrt(num_columns)``. The 1 % margin covers
  the rounding of ``|cos| <= 1`` (relative errors of order ``d * 1e-7`` in float32); it adds
  no annealing step at the default ``k = 30``, and any margin only adds masked steps.

  Args:
    num_columns: coordinates per point: ``k``, or ``B`` for ``anchors="all"``.

  Returns:
    The bound, to pass as ``max_diameter`` to
    :func:`~mtpkd_jax.ot.divergence.sinkhorn_divergence`.
  """
  return 2.0 * math.sqrt(num_columns) * 1.01


def centroid_distance(s_teacher: jnp.ndarray, s_student: jnp.ndarray) -> jnp.ndarray:
  """``‖mean_rows(S_T) - mean_rows(S_S)‖₂`` over the last two axes.

  Args:
    s_teacher: Array of shape ``[..., B, B]``.
    s_student: Array broadcastable against ``s_teacher``.

  Returns:
    Array of shape ``[...]``; its gradient is finite (zero) when the centroids coincide.
  """
  diff = jnp.mean(s_teacher, axis=-2) - jnp.mean(s_student, axis=-2)
  sq = jnp.sum(diff * diff, axis=-1)
  # sqrt has an infinite derivative at 0: differentiate through a clamped value there.
  safe = jnp.where(sq > 0, sq, 1.0)
  return jnp.where(sq > 0, jnp.sqrt(safe), 0.0)
