"""MT-PKDOT's structural distillation loss, all teachers in one batched Sinkhorn solve.

:func:`structural_plan` is the same pipeline for one teacher, down to its transport plan
(what the comparison plots).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from mtpkd_jax.ot import divergence, similarity, sinkhorn
from mtpkd_jax.ot import schedules as schedules_lib


def _check_inputs(student, teachers, anchors, k, teacher_weights) -> None:
  if student.ndim != 2:
    raise ValueError(f"`student` must have shape [B, d_s], got {student.shape}.")
  if teachers.ndim != 3:
    raise ValueError(f"`teachers` must have shape [T, B, d_t], got {teachers.shape}.")
  batch = student.shape[0]
  if teachers.shape[1] != batch:
    raise ValueError(
      f"`teachers` batch size {teachers.shape[1]} differs from `student` batch size {batch}."
    )
  if batch < 2:
    raise ValueError(f"The batch must hold at least 2 samples, got {batch}.")
  similarity.check_anchors(anchors, k, batch)
  if teacher_weights is not None and jnp.shape(teacher_weights) != (teachers.shape[0],):
    raise ValueError(
      f"`teacher_weights` must have shape ({teachers.shape[0]},), got {jnp.shape(teacher_weights)}."
    )


def _raise_if_not_finite(finite) -> None:
  if not bool(finite):
    raise FloatingPointError("structural_ot_loss: non-finite values in the embeddings.")


def _anchored_points(s_teacher, s_student, anchors, k):
  """Both similarity matrices shifted to non-negative, then anchored on the teacher's."""
  return similarity.select_anchors(
    similarity.shift_nonnegative(s_teacher), similarity.shift_nonnegative(s_student), anchors, k
  )


def structural_ot_loss(
  student: jnp.ndarray,
  teachers: jnp.ndarray | Sequence[jnp.ndarray],
  *,
  anchors: str = "least",
  k: int = 30,
  schedule: schedules_lib.Schedule = schedules_lib.Anneal(blur=0.1, scaling=0.5),
  teacher_weights: jnp.ndarray | None = None,
  centroid_weight: float = 0.0,
  backend: str = "fused",
  gradient: str = "envelope",
  debug: bool = False,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """Structural similarity + optimal transport distillation loss of MT-PKDOT.

  For each teacher ``t``: ``S_T = cos(Z_t)`` (no gradient) and ``S_S = cos(student)``, both
  ``[B, B]``; both shifted to non-negative; ``k`` anchor columns per row chosen on ``S_T``;
  then the debiased Sinkhorn divergence between the ``B`` rows of the two anchored
  matrices (points in ``R^k``, uniform weights, cost ``½‖x - y‖²``), plus the centroid
  term ``‖mean_rows(S_T) - mean_rows(S_S)‖₂`` on the unshifted matrices. Every teacher's
  three OT terms are solved together in one batched Sinkhorn loop.

  Args:
    student: Array of shape ``[B, d_s]``, the student's embeddings.
    teachers: Array of shape ``[T, B, d_t]`` (or a sequence of ``[B, d_t]``), the teachers'
      embeddings; ``d_t`` may differ from ``d_s``. Treated as constants.
    anchors: ``least | most | all`` (see :func:`~mtpkd_jax.ot.similarity.select_anchors`).
    k: anchors per row, ``1 <= k < B``; ignored for ``all``.
    schedule: Sinkhorn schedule; the default is the research release's GeomLoss setting.
      Under ``Anneal`` (``fused`` backend, ``envelope`` gradient) the loop runs as many steps
      as the widest anchored clouds would need (every coordinate lies in ``[0, 2]``), each
      teacher's steps past its own schedule masked: GeomLoss's results, and a loop whose
      trip count is known at compile time, so that an accelerator runs the whole loss
      without the host.
    teacher_weights: Array of shape ``[T]`` weighting the teachers (e.g. a one-hot for
      ``min_loss`` routing); ``None`` averages them. Treated as constants.
    centroid_weight: weight of the centroid term inside each teacher's loss.
    backend: ``fused | ott``.
    gradient: ``envelope | unrolled`` (``fused`` backend).
    debug: raise ``FloatingPointError`` (through a host callback) when the embeddings hold
      NaN or Inf; off the hot path by default.

  Returns:
    ``(loss, aux)``: ``loss = Σ_t w_t (OT_t + centroid_weight * centroid_t)``, a scalar that
    is NaN whenever the embeddings are not all finite; ``aux`` holds ``ot`` and ``centroid``
    (``[T]``), ``iterations`` (most run by any problem), ``marginal_error`` (largest),
    ``converged`` and ``finite`` (booleans). Under ``Anneal`` (the default), a fixed
    schedule, ``marginal_error`` is that of the last annealing iterate and ``converged`` is
    usually False; neither says anything against the loss, which is GeomLoss's (see
    :class:`~mtpkd_jax.ot.schedules.Anneal`).

  Raises:
    ValueError: at trace time, for bad shapes or arguments.
  """
  if not hasattr(teachers, "ndim"):
    teachers = jnp.stack(list(teachers))
  _check_inputs(student, teachers, anchors, k, teacher_weights)
  num_teachers = teachers.shape[0]
  finite = jnp.all(jnp.isfinite(student)) & jnp.all(jnp.isfinite(teachers))
  if debug:
    jax.debug.callback(_raise_if_not_finite, finite)

  s_student = similarity.cosine_similarity(student)
  s_teachers = jax.lax.stop_gradient(similarity.cosine_similarity(teachers))
  teacher_points, student_points = _anchored_points(s_teachers, s_student, anchors, k)
  # The known bound on the clouds' diameter gives the loop a static trip count.
  out = divergence.sinkhorn_divergence(
    student_points,
    teacher_points,
    schedule=schedule,
    backend=backend,
    gradient=gradient,
    max_diameter=similarity.anchored_diameter_bound(student_points.shape[-1]),
  )
  centroid = similarity.centroid_distance(s_teachers, s_student)
  if teacher_weights is None:
    weights = jnp.full((num_teachers,), 1.0 / num_teachers, out.value.dtype)
  else:
    weights = jax.lax.stop_gradient(jnp.asarray(teacher_weights, out.value.dtype))
  loss = jnp.sum(weights * (out.value + centroid_weight * centroid))
  aux = {
    "ot": out.value,
    "centroid": centroid,
    "iterations": jnp.max(out.iterations),
    "marginal_error": jnp.max(out.marginal_error),
    "converged": jnp.all(out.converged),
    "finite": finite,
  }
  return jnp.where(finite, loss, jnp.nan), aux


def structural_plan(
  student: jnp.ndarray, teacher: jnp.ndarray, *, anchors: str, k: int, epsilon: float
) -> jnp.ndarray:
  """The transport plan between a student's and a teacher's batch structures.

  As in :func:`structural_ot_loss`: ``S_S = cos(student)`` and ``S_T = cos(teacher)``, both
  shifted to non-negative, ``k`` anchor columns per row chosen on ``S_T``; then the entropic
  plan between the student's anchored rows and the teacher's (cost ``½‖x - y‖²``, uniform
  weights) at ``epsilon``, solved to convergence (:class:`~mtpkd_jax.ot.schedules.Tolerance`).

  Args:
    student: Array of shape ``[B, d_s]``.
    teacher: Array of shape ``[B, d_t]``.
    anchors: ``least | most | all``.
    k: anchors per row, ``1 <= k < B``; ignored for ``all``.
    epsilon: the absolute entropic regularisation.

  Returns:
    Array of shape ``[B, B]``: row ``i`` is student sample ``i``, column ``j`` teacher
    sample ``j``; it sums to 1.

  Raises:
    ValueError: for bad shapes or arguments.
  """
  _check_inputs(student, teacher[None], anchors, k, None)
  s_teacher = similarity.cosine_similarity(teacher)
  s_student = similarity.cosine_similarity(student)
  teacher_points, student_points = _anchored_points(s_teacher, s_student, anchors, k)
  cost = divergence.half_sq_euclidean(student_points[None], teacher_points[None])
  out = sinkhorn.solve(cost, schedule=schedules_lib.Tolerance(epsilon=epsilon))
  return sinkhorn.transport_plan(cost, out)[0]
