"""Debiased Sinkhorn divergences between batches of point clouds, on either backend.

``S_eps(a, b) = OT_eps(a, b) - ½ OT_eps(a, a) - ½ OT_eps(b, b)`` with ground cost
``½‖x - y‖²``, so ``S_eps(a, a) = 0``. Both backends take the same arguments and give the
same answer at convergence:

* ``fused``: the library's batched loop (:mod:`mtpkd_jax.ot.sinkhorn`): all ``3P`` problems
  advance together, the two symmetric ones with a single transform per iteration. Under
  ``Anneal`` its value and gradient are GeomLoss's.
* ``ott``: the same problems built as ott-jax ``Geometry`` objects and solved by
  ``ott.solvers.linear.sinkhorn.Sinkhorn``, vmapped over the problem axis
  (:mod:`mtpkd_jax.ot.ott_backend`); ``Fixed`` and ``Tolerance`` only.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtpkd_jax.ot import schedules as schedules_lib
from mtpkd_jax.ot import sinkhorn

BACKENDS = ("fused", "ott")


class DivergenceOutput(NamedTuple):
  """Result of :func:`sinkhorn_divergence` for ``P`` pairs of clouds.

  Attributes:
    value: ``[P]`` debiased divergence (or ``OT_eps(a, b)`` when ``debias=False``).
    ot: ``[P]`` the cross term ``OT_eps(a, b)``.
    iterations: ``[P]`` iterations run: the terms of a problem run together, until the
      last of them stops (``Tolerance``: until every term's error is at most the threshold).
    marginal_error: ``[P]`` largest L1 marginal error of the problem's terms.
    converged: ``[P]`` whether every term's error is at most ``schedule.threshold``. Under
      ``Anneal``, a fixed schedule that stops whatever the error, this is a diagnostic,
      usually False at the default settings, and says nothing against the value
      (GeomLoss's); see :class:`~mtpkd_jax.ot.schedules.Anneal`.
  """

  value: jnp.ndarray
  ot: jnp.ndarray
  iterations: jnp.ndarray
  marginal_error: jnp.ndarray
  converged: jnp.ndarray


def half_sq_euclidean(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
  """Cost ``½‖x_i - y_j‖²``: ``[P, n, d], [P, m, d] -> [P, n, m]`` (clamped at 0)."""
  sq_x = jnp.sum(x * x, axis=-1)
  sq_y = jnp.sum(y * y, axis=-1)
  cross = jnp.einsum("pnd,pmd->pnm", x, y)
  return jnp.maximum(0.5 * (sq_x[:, :, None] + sq_y[:, None, :]) - cross, 0.0)


def _costs(x, y, debias, detach):
  """``(C_xy, C_yx, C_xx, C_yy)``, the last two ``None`` without ``debias``.

  With ``detach``, each cost carries the gradient of its first cloud only, as GeomLoss's
  ``cost(x, y.detach())``: the fused solver's envelope gradient expects that.
  """
  sg = jax.lax.stop_gradient if detach else (lambda v: v)
  pairs = [(x, y), (y, x)] + ([(x, x), (y, y)] if debias else [])
  costs = [half_sq_euclidean(u, sg(v)) for u, v in pairs]
  return tuple(costs) + (() if debias else (None, None))


def bounding_diameter(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
  """GeomLoss's ``max_diameter``: diagonal of the joint bounding box, ``[P]`` (no gradient)."""
  points = jax.lax.stop_gradient(jnp.concatenate([x, y], axis=-2))
  extent = jnp.max(points, axis=-2) - jnp.min(points, axis=-2)
  return jnp.sqrt(jnp.sum(extent * extent, axis=-1))


def sinkhorn_divergence(
  x: jnp.ndarray,
  y: jnp.ndarray,
  a: jnp.ndarray | None = None,
  b: jnp.ndarray | None = None,
  *,
  schedule: schedules_lib.Schedule = schedules_lib.Anneal(),
  backend: str = "fused",
  gradient: str = "envelope",
  debias: bool = True,
  max_diameter: float | None = None,
) -> DivergenceOutput:
  """Sinkhorn divergences between ``P`` pairs of point clouds, solved in one batch.

  Args:
    x: Array of shape ``[P, n, d]``.
    y: Array of shape ``[P, m, d]``.
    a: Array of shape ``[P, n]`` of positive weights summing to 1, or ``None`` (uniform).
    b: Array of shape ``[P, m]``, or ``None`` (uniform).
    schedule: epsilon schedule and stopping rule (see :mod:`mtpkd_jax.ot.schedules`).
    backend: ``fused | ott``.
    gradient: ``envelope | unrolled`` (``fused`` only; ``ott`` differentiates its
      ``reg_ot_cost`` implicitly). Under ``Anneal``, ``envelope`` is GeomLoss's gradient:
      the final extrapolation differentiated, the potentials before it held constant.
    debias: subtract ``½ OT(a, a) + ½ OT(b, b)``.
    max_diameter: a static bound on :func:`bounding_diameter` of every pair, or ``None``.
      With ``Anneal`` and the envelope gradient, the fused loop then runs the bound's
      schedule length, each pair's steps past its own schedule masked: the same results, and
      a loop whose trip count is known at compile time (no host round trip per trip on an
      accelerator). A pair wider than the bound is annealed as if its diameter were the bound,
      from a smaller first epsilon than GeomLoss's: its value and gradient are then not
      GeomLoss's, and nothing in the output says so. Pass a true bound (a Python float:
      ``structural_ot_loss`` passes ``similarity.anchored_diameter_bound``) or ``None``.

  Returns:
    A :class:`DivergenceOutput`.
  """
  if x.ndim != 3 or y.ndim != 3:
    raise ValueError(f"`x` and `y` must have shape [P, n, d], got {x.shape} and {y.shape}.")
  if x.shape[0] != y.shape[0] or x.shape[-1] != y.shape[-1]:
    raise ValueError(f"`x` and `y` must share problems and dimension, got {x.shape} and {y.shape}.")
  if backend not in BACKENDS:
    raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}.")
  num_problems, n, _ = x.shape
  m = y.shape[1]
  dtype = jnp.result_type(x.dtype, y.dtype, jnp.float32)
  x, y = x.astype(dtype), y.astype(dtype)
  log_a = sinkhorn.log_weights(a, (num_problems, n), dtype)
  log_b = sinkhorn.log_weights(b, (num_problems, m), dtype)
  diameter = bounding_diameter(x, y)
  cost_xy, cost_yx, cost_xx, cost_yy = _costs(
    x, y, debias, detach=backend == "fused" and gradient == "envelope"
  )
  if backend == "ott":
    # Imported here: ott-jax takes about 1.5 s to import, a third of the main job's start-up.
    from mtpkd_jax.ot import ott_backend  # noqa: PLC0415

    values, iterations, error, converged = ott_backend.solve(
      schedule, cost_xy, cost_xx, cost_yy, log_a, log_b
    )
  else:
    _, values, _, iterations, error = sinkhorn.run_batched(
      schedule,
      gradient,
      cost_xy,
      cost_yx,
      cost_xx,
      cost_yy,
      log_a,
      log_b,
      diameter,
      max_diameter,
    )
    converged = error <= schedule.threshold
  value = values["xy"]
  if debias:
    value = value - 0.5 * values["xx"] - 0.5 * values["yy"]
  return DivergenceOutput(
    value=value,
    ot=values["xy"],
    iterations=iterations,
    marginal_error=error,
    converged=converged,
  )
