"""POT's log-domain Sinkhorn, the independent reference of the OT tests and benchmark.

POT is a test and benchmark dependency (the ``test`` extra), imported where it is used.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np


class PotSolution(NamedTuple):
  """POT's solution of one entropic OT problem.

  Attributes:
    value: ``<π, C> + eps KL(π | a ⊗ b)``.
    linear: ``<π, C>``.
    iterations: the iterations POT ran.
  """

  value: float
  linear: float
  iterations: int


def entropic_ot(
  cost: np.ndarray,
  eps: float,
  a: np.ndarray | None = None,
  b: np.ndarray | None = None,
  *,
  stop_threshold: float = 1e-13,
  max_iterations: int = 100_000,
) -> PotSolution:
  """Entropic OT in the KL convention, from the plan of ``ot.sinkhorn(method="sinkhorn_log")``.

  Args:
    cost: Array of shape ``[n, m]``.
    eps: absolute epsilon.
    a: Array of shape ``[n]`` of weights summing to 1, or ``None`` (uniform).
    b: Array of shape ``[m]``, or ``None`` (uniform).
    stop_threshold: POT's ``stopThr`` (L2 error of a marginal, checked every 10 iterations).
    max_iterations: POT's ``numItermax``.

  Returns:
    A :class:`PotSolution`.
  """
  import ot

  n, m = cost.shape
  a = np.full(n, 1.0 / n) if a is None else np.asarray(a, np.float64)
  b = np.full(m, 1.0 / m) if b is None else np.asarray(b, np.float64)
  with warnings.catch_warnings():
    # POT warns when it stops at max_iterations, which the fixed-iteration benchmark asks for.
    warnings.simplefilter("ignore")
    plan, log = ot.sinkhorn(
      a,
      b,
      cost,
      eps,
      method="sinkhorn_log",
      numItermax=max_iterations,
      stopThr=stop_threshold,
      log=True,
    )
  positive = plan > 0
  kl = np.sum(plan[positive] * np.log(plan[positive] / np.outer(a, b)[positive]))
  linear = float(np.sum(plan * cost))
  return PotSolution(linear + eps * kl, linear, int(log["niter"]) + 1)
