"""Epsilon schedules and stopping rules for the Sinkhorn solvers.

A schedule says which entropic regularisation ``epsilon`` each Sinkhorn iteration uses and
when the loop stops. Schedules are frozen dataclasses, so they are hashable and can be
passed as static arguments to jit-compiled functions.

* :class:`Fixed`: ``iterations`` alternating updates at a constant ``epsilon``.
* :class:`Tolerance`: alternating updates at a constant ``epsilon`` until the L1 marginal
  error is at most ``threshold`` (or ``max_iterations`` is reached).
* :class:`Anneal`: GeomLoss's epsilon-scaling (``SamplesLoss("sinkhorn", p=2, blur, scaling)``):
  symmetrised updates while epsilon decreases from the squared diameter of the point clouds
  to ``blur**2``, dividing by ``scaling**2`` per step, then one final extrapolation step. This
  is what the MT-PKDOT research release used (``blur = 0.1``, ``scaling = 0.5``).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp


def _require_positive(name: str, value: float) -> None:
  if not value > 0:
    raise ValueError(f"`{name}` must be positive, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class Fixed:
  """A fixed number of alternating Sinkhorn updates at constant epsilon.

  Attributes:
    iterations: number of Sinkhorn iterations (each updates both potentials).
    epsilon: absolute entropic regularisation.
    threshold: L1 marginal error under which the result is reported as converged; it does
      not stop the loop.
  """

  iterations: int = 100
  epsilon: float = 0.01
  threshold: float = 1e-3

  def __post_init__(self):
    if not (isinstance(self.iterations, int) and self.iterations >= 1):
      raise ValueError(f"`iterations` must be a positive int, got {self.iterations!r}.")
    _require_positive("epsilon", self.epsilon)
    _require_positive("threshold", self.threshold)

  @property
  def max_iterations(self) -> int:
    """The most Sinkhorn iterations the schedule runs: ``iterations``."""
    return self.iterations

  @property
  def target_epsilon(self) -> float:
    """The epsilon of the returned plan and value: ``epsilon``."""
    return self.epsilon


@dataclasses.dataclass(frozen=True)
class Tolerance:
  """Alternating Sinkhorn updates at constant epsilon until the marginals match.

  Attributes:
    threshold: stop once the L1 marginal error of the plan is at most this.
    max_iterations: stop after this many iterations even if not converged.
    epsilon: absolute entropic regularisation.
  """

  threshold: float = 1e-3
  max_iterations: int = 1000
  epsilon: float = 0.01

  def __post_init__(self):
    _require_positive("threshold", self.threshold)
    if not (isinstance(self.max_iterations, int) and self.max_iterations >= 1):
      raise ValueError(f"`max_iterations` must be a positive int, got {self.max_iterations!r}.")
    _require_positive("epsilon", self.epsilon)

  @property
  def target_epsilon(self) -> float:
    """The epsilon of the returned plan and value: ``epsilon``."""
    return self.epsilon


@dataclasses.dataclass(frozen=True)
class Anneal:
  """GeomLoss's epsilon-scaling schedule.

  With diameter ``D`` of the two clouds (the diagonal of their joint bounding box), epsilon
  takes the values ``[D², D², D² s², D² s⁴, ..., blur²]`` where ``s = scaling``: the list
  ``[D**p] + [exp(e) for e in arange(p log D, p log blur, p log s)] + [blur**p]`` with ``p = 2``
  of ``geomloss.utils.epsilon_schedule``. Clouds narrower than ``blur`` anneal from ``D²``
  too: the ``arange`` is empty and the list is ``[D², blur²]``. (GeomLoss fails on ``D = 0``;
  here that case starts at ``blur²``, which changes nothing since every cost is then 0.)
  Updates are symmetrised (each potential is averaged with its Sinkhorn transform), and a
  final extrapolation step at ``blur²`` gives the value. GeomLoss differentiates that step
  alone, every potential before it held constant; so does ``gradient="envelope"`` of the
  fused solver (:mod:`mtpkd_jax.ot.sinkhorn`).

  This is a fixed schedule, not a stopping rule: like GeomLoss, it runs its steps whatever
  the marginal error, and does not solve the problem at ``blur²`` to convergence. The
  solvers' ``marginal_error`` is then the L1 marginal error, at ``blur²``, of the plan of the
  last iterate (before the extrapolation), and ``converged`` whether that is at most
  ``threshold``: a diagnostic of how far the schedule ends from the entropic problem at
  ``blur²``. At the default settings it is usually False (errors of 0.2 to 0.4 on the OT
  benchmark's clouds, against ``threshold = 1e-3``); that says nothing against the loss,
  whose value and gradient are GeomLoss's by construction.

  Attributes:
    blur: final length scale; the target epsilon is ``blur**2``.
    scaling: ratio of consecutive length scales, in ``(0, 1)``.
    max_iterations: length of the unrolled gradient's ``lax.scan`` (``gradient="unrolled"``),
      which must be static. The schedule has ``2 + ceil(log(D / blur) / log(1 / scaling))``
      steps (e.g. 164 for ``D = 40``, ``blur = 0.01``, ``scaling = 0.95``); the envelope
      gradient's loop runs them all, whatever ``max_iterations``. The unrolled gradient
      truncates a longer schedule to its first ``max_iterations - 1`` steps and one at
      ``blur²``, so its value and gradient are then not GeomLoss's; the solvers' ``iterations``
      output shows it (``max_iterations`` instead of the schedule's length).
    threshold: L1 marginal error under which the result is reported as converged; it does
      not stop the loop (see above).
  """

  blur: float = 0.1
  scaling: float = 0.5
  max_iterations: int = 100
  threshold: float = 1e-3

  def __post_init__(self):
    _require_positive("blur", self.blur)
    if not 0 < self.scaling < 1:
      raise ValueError(f"`scaling` must be in (0, 1), got {self.scaling!r}.")
    if not (isinstance(self.max_iterations, int) and self.max_iterations >= 2):
      raise ValueError(f"`max_iterations` must be an int >= 2, got {self.max_iterations!r}.")
    _require_positive("threshold", self.threshold)

  @property
  def target_epsilon(self) -> float:
    """The epsilon of the returned plan and value: ``blur²``."""
    return self.blur**2

  def num_steps(self, diameter: jnp.ndarray, truncate: bool = False) -> jnp.ndarray:
    """Number of epsilon values for clouds of the given diameter, shape of ``diameter``.

    With ``truncate``, at most ``max_iterations`` (the unrolled gradient's loop length).
    """
    # The length of GeomLoss's arange, 0 when D <= blur (and for D = 0: log(blur / 0) = inf).
    middle = jnp.ceil(jnp.log(self.blur / jnp.asarray(diameter)) / math.log(self.scaling))
    steps = 2 + jnp.maximum(middle, 0).astype(jnp.int32)
    return jnp.minimum(steps, self.max_iterations) if truncate else steps

  def epsilon_at(
    self, step: jnp.ndarray, diameter: jnp.ndarray, truncate: bool = False
  ) -> jnp.ndarray:
    """Epsilon of step ``step`` (0-based) of the schedule for clouds of this diameter.

    With ``truncate``, of the schedule cut to :meth:`num_steps` ``(diameter, truncate)``
    steps, the last at ``blur²``.
    """
    start = diameter**2
    start = jnp.where(start > 0, start, self.blur**2)
    decayed = start * self.scaling ** (2 * jnp.maximum(step - 1, 0))
    return jnp.where(step >= self.num_steps(diameter, truncate) - 1, self.blur**2, decayed)


Schedule = Fixed | Tolerance | Anneal

_SCHEDULES = {"fixed": Fixed, "tolerance": Tolerance, "anneal": Anneal}


def make_schedule(name: str, **kwargs) -> Schedule:
  """Builds a schedule from its name (``fixed | tolerance | anneal``) and fields."""
  if name not in _SCHEDULES:
    raise ValueError(f"Unknown schedule {name!r}; expected one of {sorted(_SCHEDULES)}.")
  return _SCHEDULES[name](**kwargs)
