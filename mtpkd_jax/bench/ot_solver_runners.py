"""The Sinkhorn solver alone (``solver``, ``hard``) and the fused loss's compiled memory.

* ``solver``: ``[P, n, n]`` costs ``½‖x - y‖²`` of random clouds (``d = 8``),
  ``Fixed(iterations, epsilon)``: ``fused`` (:func:`mtpkd_jax.ot.solve`), ``ott``
  (``Sinkhorn(min_iterations = max_iterations = iterations)`` on ``Geometry(cost_matrix)``,
  vmapped over problems) and ``pot`` (``sinkhorn_log``, ``stopThr = 0``, looped over
  problems). GeomLoss has no fixed-iteration mode: not applicable.
* ``hard``: two well-separated Gaussian clouds under ``Tolerance`` (L1 marginal error for
  fused and ott, POT's L2 error), reporting the iterations each implementation used.

Counted exponentials: ``solver`` ``2 P n² iterations``; ``hard`` ``2 P n² max_p(iters_p)``
for the batched ones (all problems advance in lockstep), ``2 n² Σ_p iters_p`` for looped POT.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mtpkd_jax import ot as mot
from mtpkd_jax.bench import ot_inputs, pot, timing
from mtpkd_jax.ot import sinkhorn as sinkhorn_lib

IMPLS = ("fused", "ott", "pot")
CASES = ("solver", "hard")


def _ott_solver(schedule):
  from ott.geometry import geometry
  from ott.problems.linear import linear_problem
  from ott.solvers.linear import sinkhorn as ott_sinkhorn

  if isinstance(schedule, mot.Fixed):
    solver = ott_sinkhorn.Sinkhorn(
      threshold=0.0, min_iterations=schedule.iterations, max_iterations=schedule.iterations
    )
  else:
    solver = ott_sinkhorn.Sinkhorn(
      threshold=schedule.threshold, max_iterations=schedule.max_iterations
    )

  def solve_one(cost):
    geom = geometry.Geometry(cost_matrix=cost, epsilon=schedule.target_epsilon)
    out = solver(linear_problem.LinearProblem(geom))
    return out.reg_ot_cost, out.n_iters

  return jax.vmap(solve_one)


def _fused_solver(schedule):
  def solve(cost):
    out = mot.solve(cost, schedule=schedule)
    return out.value, out.iterations

  return solve


def _case(config, case, problems, n):
  """``(costs [P, n, n], schedule, POT stopThr)`` of ``case``."""
  if case == "solver":
    schedule = mot.Fixed(iterations=config.solver_iterations, epsilon=config.solver_epsilon)
    return ot_inputs.random_costs(n, problems, n), schedule, 0.0
  schedule = mot.Tolerance(
    threshold=config.hard_threshold,
    max_iterations=config.hard_max_iterations,
    epsilon=config.hard_epsilon,
  )
  return ot_inputs.hard_costs(n, problems, n), schedule, config.hard_threshold


def bench(config, case: str, problems: int, n: int, pot_available: bool):
  """Times the solver alone on ``[problems, n, n]`` costs.

  Args:
    config: the run's configuration (see ``experiments/configs/bench_ot.py``).
    case: ``solver`` (``Fixed`` iterations on random clouds) or ``hard`` (``Tolerance`` on two
      separated clouds).
    problems: ``P``.
    n: points per cloud.
    pot_available: whether to time POT too.

  Returns:
    A list of :class:`~mtpkd_jax.bench.timing.Measurement`.
  """
  if case not in CASES:
    raise ValueError(f"`case` must be one of {CASES}, got {case!r}.")
  cost, schedule, stop_threshold = _case(config, case, problems, n)
  j_cost = jnp.asarray(cost, jnp.float32)

  def work(iters):
    iters = np.asarray(iters)
    return 2 * n * n * (problems * iters.max() if case == "hard" else iters.sum())

  def summarize_jax(out):
    value, iters = out
    iters = np.asarray(iters)
    counted = iters if case == "hard" else np.full(problems, config.solver_iterations)
    return float(jnp.mean(value)), int(iters.max()), work(counted)

  size = {"n": n, "P": problems}
  runners = {}
  for impl, fn in (("fused", _fused_solver(schedule)), ("ott", _ott_solver(schedule))):
    compiled, seconds, memory = timing.compile_aot(fn, j_cost)
    call = lambda c=compiled: jax.block_until_ready(c(j_cost))  # noqa: E731
    runners[impl] = timing.Runner(call, summarize_jax, seconds, memory, "xla temp+output")
  if pot_available:

    def pot_call():
      return [
        pot.entropic_ot(
          c,
          schedule.target_epsilon,
          stop_threshold=stop_threshold,
          max_iterations=schedule.max_iterations,
        )
        for c in cost
      ]

    def summarize_pot(out):
      values, iters = [o.value for o in out], [o.iterations for o in out]
      if case == "hard":
        return float(np.mean(values)), max(iters), 2 * n * n * sum(iters)
      return float(np.mean(values)), max(iters), work(np.full(problems, max(iters)))

    peak = timing.tracemalloc_peak(pot_call)
    runners["pot"] = timing.Runner(pot_call, summarize_pot, None, peak, "tracemalloc peak")
  runners = {(impl, "fwd"): runner for impl, runner in runners.items()}
  return [measurement for measurement, _ in timing.measure(case, size, runners, config)]


def bench_memory(config) -> list[dict[str, Any]]:
  """Compiled forward+backward memory of the fused loss, envelope vs unrolled gradients."""
  student, teachers = ot_inputs.make_embeddings(
    0, config.memory_batch, config.num_teachers, config.dim
  )
  student, teachers = jnp.asarray(student), jnp.asarray(teachers)
  rows = []
  for gradient in sinkhorn_lib.GRADIENTS:
    for max_iterations in config.memory_iterations:
      schedule = mot.Anneal(blur=config.blur, scaling=config.scaling, max_iterations=max_iterations)

      def loss(s, t, schedule=schedule, gradient=gradient):
        return mot.structural_ot_loss(s, t, k=config.k, schedule=schedule, gradient=gradient)

      compiled = jax.jit(jax.value_and_grad(loss, has_aux=True)).lower(student, teachers)
      analysis = compiled.compile().memory_analysis()
      rows.append(
        {
          "B": config.memory_batch,
          "gradient": gradient,
          "max_iterations": max_iterations,
          "temp_bytes": None if analysis is None else int(analysis.temp_size_in_bytes),
          "output_bytes": None if analysis is None else int(analysis.output_size_in_bytes),
        }
      )
  return rows
