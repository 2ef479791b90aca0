"""The ``ott`` backend: the same batched problems solved by ott-jax's Sinkhorn.

Each ``[n, m]`` cost matrix becomes an ``ott.geometry.geometry.Geometry`` with an
**absolute** epsilon (ott-jax 0.6's default is relative to the cost's spread), and
``ott.solvers.linear.sinkhorn.Sinkhorn`` is vmapped over the problem axis inside the
caller's jit. Gradients are ott's implicit differentiation of ``reg_ot_cost``, the one
output whose implicit gradient works on JAX 0.10.

Schedules map onto ott as follows. ``Fixed(n)``: ``min_iterations = max_iterations = n``
with implicit differentiation on (ott's backward pass is wrong for that setting without it).
``Tolerance``: ott's own L1 marginal ``threshold`` and ``max_iterations``. ``Anneal`` is
refused: ott's solver has neither GeomLoss's symmetrised updates nor its stop after a final
extrapolation, so it would solve another objective (the converged ``OT_{blur²}``, which both
backends give with ``Tolerance(epsilon=blur**2)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn

from mtpkd_jax.ot import schedules as schedules_lib

# ott checks the error every `inner_iterations`; 10 is its default.
_INNER_ITERATIONS = 10


def _solver(schedule: schedules_lib.Schedule) -> ott_sinkhorn.Sinkhorn:
  if isinstance(schedule, schedules_lib.Fixed):
    return ott_sinkhorn.Sinkhorn(
      threshold=0.0,
      min_iterations=schedule.iterations,
      max_iterations=schedule.iterations,
      inner_iterations=1,
    )
  return ott_sinkhorn.Sinkhorn(
    threshold=schedule.threshold,
    max_iterations=max(schedule.max_iterations, _INNER_ITERATIONS),
    inner_iterations=_INNER_ITERATIONS,
  )


def _solve_one(schedule, cost, log_a, log_b):
  geom = geometry.Geometry(cost_matrix=cost, epsilon=schedule.target_epsilon)
  problem = linear_problem.LinearProblem(geom, a=jnp.exp(log_a), b=jnp.exp(log_b))
  out = _solver(schedule)(problem)
  # ott records an error every `inner_iterations`; -1 marks blocks that never ran.
  errors = out.errors
  error = errors[jnp.maximum(jnp.sum(errors != -1) - 1, 0)]
  return out.reg_ot_cost, out.n_iters, error, out.converged


def solve(schedule, cost_xy, cost_xx, cost_yy, log_a, log_b):
  """ott-jax counterpart of :func:`mtpkd_jax.ot.sinkhorn.run_batched` (values only).

  Args:
    schedule: a :mod:`~mtpkd_jax.ot.schedules` schedule.
    cost_xy: Array of shape ``[P, n, m]``.
    cost_xx: Array of shape ``[P, n, n]`` or ``None``.
    cost_yy: Array of shape ``[P, m, m]`` or ``None``.
    log_a: Array of shape ``[P, n]``.
    log_b: Array of shape ``[P, m]``.

  Returns:
    ``(values, iterations, marginal_error, converged)``: ``values`` a dict with ``xy`` (and
    ``xx``, ``yy``) of shape ``[P]``; the rest ``[P]``, taken over the problem's terms.

  Raises:
    ValueError: for an ``Anneal`` schedule (see the module docstring).
  """
  if isinstance(schedule, schedules_lib.Anneal):
    raise ValueError(
      "`backend='ott'` cannot run the `Anneal` schedule (GeomLoss's annealing with a final "
      "extrapolation); use `backend='fused'`, or `Tolerance(epsilon=blur**2)` on either "
      "backend for the converged OT at blur²."
    )
  solve_all = jax.vmap(lambda c, la, lb: _solve_one(schedule, c, la, lb))
  terms = {"xy": (cost_xy, log_a, log_b)}
  if cost_xx is not None:
    terms["xx"] = (cost_xx, log_a, log_a)
    terms["yy"] = (cost_yy, log_b, log_b)
  num_problems = cost_xy.shape[0]
  if len({cost.shape for cost, _, _ in terms.values()}) == 1:
    # Square problems (n == m): every term of every problem in one vmapped solve.
    stacked = [jnp.concatenate(parts) for parts in zip(*terms.values(), strict=True)]
    outs = solve_all(*stacked)
    outs = [jnp.reshape(o, (len(terms), num_problems)) for o in outs]
  else:
    outs = [jnp.stack(o) for o in zip(*(solve_all(*t) for t in terms.values()), strict=True)]
  value, iterations, error, converged = outs
  values = dict(zip(terms, value, strict=True))
  return (
    values,
    jnp.max(iterations, axis=0),
    jnp.max(error, axis=0),
    jnp.all(converged, axis=0),
  )
