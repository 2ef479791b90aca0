"""The fused solver: batched log-domain Sinkhorn over a leading problem axis.

All problems of a batch, and for a debiased divergence its three terms ``OT(a, b)``,
``OT(a, a)`` and ``OT(b, b)``, advance together in one ``lax.while_loop``: each iteration is a
few batched log-sum-exp reductions over ``[P, n, m]`` cost tensors, with no solver call per
problem. Problems that have finished (their schedule is over, or they converged) are frozen
by a mask, so a problem's result never depends on the other problems of the batch.

Conventions (those of GeomLoss and ott-jax): potentials ``f [P, n]``, ``g [P, m]``; the
entropic problem is ``min_π <π, C> + eps KL(π | a ⊗ b)``, whose value at the optimum is the
dual value ``<a, f> + <b, g>``; the plan is ``π = a ⊗ b · exp((f ⊕ g - C) / eps)``. The
Sinkhorn transform of ``g`` is ``T_f(g)_i = -eps log Σ_j b_j exp((g_j - C_ij) / eps)``.

Gradients. ``gradient="envelope"`` (default) differentiates the value by the envelope
theorem, ``dOT/dC = π``, in a ``jax.custom_vjp``: the loop is not differentiated and keeps
no per-iteration state. ``gradient="unrolled"`` runs the same loop as a masked ``lax.scan``
of ``max_iterations`` steps and differentiates through every iteration (kept to compare
against; memory grows with the number of iterations). Marginal weights and epsilon are
treated as constants.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtpkd_jax.ot import schedules as schedules_lib

GRADIENTS = ("envelope", "unrolled")


class SinkhornOutput(NamedTuple):
  """Result of :func:`solve` for ``P`` problems.

  Attributes:
    value: ``[P]`` entropic OT value ``<a, f> + <b, g>`` (KL-regularised convention).
    f: ``[P, n]`` final potentials of the first measure (no gradient).
    g: ``[P, m]`` final potentials of the second measure (no gradient).
    epsilon: ``[P]`` epsilon at which the final potentials were computed.
    iterations: ``[P]`` iterations each problem ran.
    marginal_error: ``[P]`` L1 marginal error of the last iterate's plan.
    converged: ``[P]`` whether ``marginal_error <= schedule.threshold``.
  """

  value: jnp.ndarray
  f: jnp.ndarray
  g: jnp.ndarray
  epsilon: jnp.ndarray
  iterations: jnp.ndarray
  marginal_error: jnp.ndarray
  converged: jnp.ndarray


class _Problems(NamedTuple):
  """Cost tensors of one batch: ``xy`` always, ``xx``/``yy`` for the debiasing terms."""

  xy: jnp.ndarray
  xx: jnp.ndarray | None
  yy: jnp.ndarray | None


# Sinkhorn transforms. `eps` has shape [P]; `h` holds log-weights plus potential / eps.
def _softmin_rows(cost, h, eps):
  """``-eps log Σ_j exp(h_j - C_ij / eps)``: ``[P, n, m], [P, m] -> [P, n]``."""
  z = h[:, None, :] - cost / eps[:, None, None]
  zmax = jax.lax.stop_gradient(jnp.max(z, axis=-1))
  return -eps[:, None] * (zmax + jnp.log(jnp.sum(jnp.exp(z - zmax[..., None]), axis=-1)))


def _softmin_cols(cost, h, eps):
  """``-eps log Σ_i exp(h_i - C_ij / eps)``: ``[P, n, m], [P, n] -> [P, m]``."""
  z = h[:, :, None] - cost / eps[:, None, None]
  zmax = jax.lax.stop_gradient(jnp.max(z, axis=-2))
  return -eps[:, None] * (zmax + jnp.log(jnp.sum(jnp.exp(z - zmax[:, None, :]), axis=-2)))


def _transform_f(cost, log_b, g, eps):
  return _softmin_rows(cost, log_b + g / eps[:, None], eps)


def _transform_g(cost, log_a, f, eps):
  return _softmin_cols(cost, log_a + f / eps[:, None], eps)


def _marginal_error(log_w, potential, transformed, eps):
  """L1 error ``Σ_i |w_i exp((φ_i - T(φ)_i) / eps) - w_i|`` of one marginal: ``[P]``."""
  return jnp.sum(
    jnp.abs(jnp.exp(log_w + (potential - transformed) / eps[:, None]) - jnp.exp(log_w)),
    axis=-1,
  )


def _init(problems, log_a, log_b, eps, averaged):
  """Potentials before the first iteration.

  GeomLoss (``averaged``) starts from one transform of zero potentials. The alternating
  scheme starts from ``f = 0, g = T_g(0)``, so that ``g = T_g(f)`` holds at every iteration
  and the row error alone is the plan's marginal error.
  """
  zeros_a, zeros_b = jnp.zeros_like(log_a), jnp.zeros_like(log_b)
  f = _transform_f(problems.xy, log_b, zeros_b, eps) if averaged else zeros_a
  pots = {"f": f, "g": _transform_g(problems.xy, log_a, zeros_a, eps)}
  if problems.xx is not None:
    pots["f_xx"] = _transform_f(problems.xx, log_a, zeros_a, eps)
    pots["g_yy"] = _transform_f(problems.yy, log_b, zeros_b, eps)
  return pots


def _iterate(problems, log_a, log_b, pots, eps, averaged):
  """One Sinkhorn iteration of every problem; returns ``(new_pots, error of pots)``."""
  f, g = pots["f"], pots["g"]
  tf = _transform_f(problems.xy, log_b, g, eps)
  error = _marginal_error(log_a, f, tf, eps)
  if averaged:
    tg = _transform_g(problems.xy, log_a, f, eps)
    error += _marginal_error(log_b, g, tg, eps)
    new = {"f": 0.5 * (f + tf), "g": 0.5 * (g + tg)}
  else:
    new = {"f": tf, "g": _transform_g(problems.xy, log_a, tf, eps)}
  if problems.xx is not None:
    # Symmetric problems: one transform per iteration, averaged (the plan is symmetric, so
    # its row and column errors are equal).
    for key, cost, log_w in (("f_xx", problems.xx, log_a), ("g_yy", problems.yy, log_b)):
      t = _transform_f(cost, log_w, pots[key], eps)
      error = jnp.maximum(error, 2 * _marginal_error(log_w, pots[key], t, eps))
      new[key] = 0.5 * (pots[key] + t)
  return new, error


def _extrapolate(problems, log_a, log_b, pots, eps):
  """Final step: transforms of the last iterate, their dual values and its marginal error."""
  f, g = pots["f"], pots["g"]
  tf = _transform_f(problems.xy, log_b, g, eps)
  tg = _transform_g(problems.xy, log_a, f, eps)
  error = _marginal_error(log_a, f, tf, eps) + _marginal_error(log_b, g, tg, eps)
  final = {"f": tf, "g": tg}
  values = {"xy": _dot(log_a, tf) + _dot(log_b, tg)}
  if problems.xx is not None:
    for name, key, cost, log_w in (
      ("xx", "f_xx", problems.xx, log_a),
      ("yy", "g_yy", problems.yy, log_b),
    ):
      t = _transform_f(cost, log_w, pots[key], eps)
      error = jnp.maximum(error, 2 * _marginal_error(log_w, pots[key], t, eps))
      final[key] = t
      values[name] = 2 * _dot(log_w, t)
  return final, values, error


def _dot(log_w, potential):
  return jnp.sum(jnp.exp(log_w) * potential, axis=-1)


def _epsilon_fn(schedule, diameter, num_problems, dtype):
  """``step -> eps [P]`` and the per-problem number of steps ``[P]``."""
  if isinstance(schedule, schedules_lib.Anneal):
    return (
      lambda step: schedule.epsilon_at(step, diameter).astype(dtype),
      schedule.num_steps(diameter),
    )
  eps = jnp.full((num_problems,), schedule.target_epsilon, dtype)
  return (lambda step: eps), jnp.full((num_problems,), schedule.max_iterations, jnp.int32)


def _run(schedule, unrolled, problems, log_a, log_b, diameter):
  """Runs the schedule; returns ``(final_pots, values, eps, iterations, error)``."""
  num_problems, dtype = log_a.shape[0], log_a.dtype
  averaged = isinstance(schedule, schedules_lib.Anneal)
  tolerance = isinstance(schedule, schedules_lib.Tolerance)
  epsilon_at, num_steps = _epsilon_fn(schedule, diameter, num_problems, dtype)

  def active(state):
    step, _, error, _ = state
    act = step < num_steps
    return act & (error > schedule.threshold) if tolerance else act

  def body(state):
    step, pots, error, iterations = state
    act = active(state)
    new_pots, new_error = _iterate(problems, log_a, log_b, pots, epsilon_at(step), averaged)
    pots = jax.tree.map(lambda new, old: jnp.where(act[:, None], new, old), new_pots, pots)
    return (
      step + 1,
      pots,
      jnp.where(act, new_error, error),
      iterations + act.astype(jnp.int32),
    )

  state = (
    jnp.zeros((), jnp.int32),
    _init(problems, log_a, log_b, epsilon_at(0), averaged),
    jnp.full((num_problems,), jnp.inf, dtype),
    jnp.zeros((num_problems,), jnp.int32),
  )
  if unrolled:
    state, _ = jax.lax.scan(
      lambda s, _: (body(s), None), state, None, length=schedule.max_iterations
    )
  else:
    state = jax.lax.while_loop(lambda s: jnp.any(active(s)), body, state)
  _, pots, _, iterations = state
  eps = jnp.full((num_problems,), schedule.target_epsilon, dtype)
  final, values, error = _extrapolate(problems, log_a, log_b, pots, eps)
  return final, values, eps, iterations, error


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _run_envelope(schedule, problems, log_a, log_b, diameter):
  return _run(schedule, False, problems, log_a, log_b, diameter)


def _run_envelope_fwd(schedule, problems, log_a, log_b, diameter):
  out = _run(schedule, False, problems, log_a, log_b, diameter)
  final, _, eps, _, _ = out
  return out, (problems, log_a, log_b, final, eps, diameter)


def _plan(cost, log_a, log_b, f, g, eps):
  """``π = a ⊗ b · exp((f ⊕ g - C) / eps)``: ``[P, n, m]``."""
  return jnp.exp(
    log_a[:, :, None]
    + log_b[:, None, :]
    + (f[:, :, None] + g[:, None, :] - cost) / eps[:, None, None]
  )


def transport_plan(cost: jnp.ndarray, out: SinkhornOutput, a=None, b=None) -> jnp.ndarray:
  """The plan ``[P, n, m]`` of a :func:`solve` result (``a``, ``b`` as given to it)."""
  num_problems, n, m = cost.shape
  log_a = log_weights(a, (num_problems, n), out.f.dtype)
  log_b = log_weights(b, (num_problems, m), out.g.dtype)
  return _plan(cost, log_a, log_b, out.f, out.g, out.epsilon)


def _run_envelope_bwd(schedule, residuals, cotangents):
  del schedule
  problems, log_a, log_b, final, eps, diameter = residuals
  ct_values = cotangents[1]

  def grad(name, cost, la, lb, f, g):
    return ct_values[name][:, None, None] * _plan(cost, la, lb, f, g, eps)

  grads = _Problems(
    xy=grad("xy", problems.xy, log_a, log_b, final["f"], final["g"]),
    xx=None
    if problems.xx is None
    else grad("xx", problems.xx, log_a, log_a, final["f_xx"], final["f_xx"]),
    yy=None
    if problems.yy is None
    else grad("yy", problems.yy, log_b, log_b, final["g_yy"], final["g_yy"]),
  )
  return grads, jnp.zeros_like(log_a), jnp.zeros_like(log_b), jnp.zeros_like(diameter)


_run_envelope.defvjp(_run_envelope_fwd, _run_envelope_bwd)


def log_weights(weights: jnp.ndarray | None, shape: tuple[int, int], dtype) -> jnp.ndarray:
  """Log of given marginal weights ``[P, n]``, or uniform ``log(1 / n)`` when ``None``."""
  if weights is None:
    return jnp.full(shape, -jnp.log(shape[1]), dtype)
  if weights.shape != shape:
    raise ValueError(f"Marginal weights must have shape {shape}, got {weights.shape}.")
  return jnp.log(weights.astype(dtype))


def run_batched(
  schedule: schedules_lib.Schedule,
  gradient: str,
  cost_xy: jnp.ndarray,
  cost_xx: jnp.ndarray | None,
  cost_yy: jnp.ndarray | None,
  log_a: jnp.ndarray,
  log_b: jnp.ndarray,
  diameter: jnp.ndarray,
):
  """Solves ``P`` problems (and their debiasing terms when given) in one loop.

  Args:
    schedule: a :mod:`~mtpkd_jax.ot.schedules` schedule.
    gradient: ``envelope | unrolled``.
    cost_xy: Array of shape ``[P, n, m]``.
    cost_xx: Array of shape ``[P, n, n]`` (symmetric), or ``None``.
    cost_yy: Array of shape ``[P, m, m]`` (symmetric), or ``None`` (with ``cost_xx``).
    log_a: Array of shape ``[P, n]``, log-weights of the first measures.
    log_b: Array of shape ``[P, m]``, log-weights of the second measures.
    diameter: Array of shape ``[P]``: the clouds' diameters (used by ``Anneal`` only).

  Returns:
    ``(potentials, values, eps, iterations, marginal_error)``: dicts keyed by ``f, g``
    (and ``f_xx, g_yy``) and ``xy`` (and ``xx, yy``), then arrays of shape ``[P]``.
  """
  if gradient not in GRADIENTS:
    raise ValueError(f"`gradient` must be one of {GRADIENTS}, got {gradient!r}.")
  problems = _Problems(cost_xy, cost_xx, cost_yy)
  diameter = jax.lax.stop_gradient(diameter)
  if gradient == "unrolled":
    final, values, eps, iterations, error = _run(schedule, True, problems, log_a, log_b, diameter)
  else:
    final, values, eps, iterations, error = _run_envelope(
      schedule, problems, log_a, log_b, diameter
    )
  final = jax.tree.map(jax.lax.stop_gradient, final)
  return final, values, eps, iterations, error


def solve(
  cost: jnp.ndarray,
  a: jnp.ndarray | None = None,
  b: jnp.ndarray | None = None,
  *,
  schedule: schedules_lib.Schedule = schedules_lib.Fixed(),
  gradient: str = "envelope",
) -> SinkhornOutput:
  """Entropic OT for a batch of cost matrices, in one batched Sinkhorn loop.

  Args:
    cost: Array of shape ``[P, n, m]``.
    a: Array of shape ``[P, n]`` of positive weights summing to 1, or ``None`` (uniform).
    b: Array of shape ``[P, m]``, or ``None`` (uniform).
    schedule: epsilon schedule and stopping rule. ``Anneal`` takes the diameter as
      ``sqrt(2 max C)``, the largest distance for the cost ``½‖x - y‖²``.
    gradient: ``envelope | unrolled``.

  Returns:
    A :class:`SinkhornOutput`.
  """
  if cost.ndim != 3:
    raise ValueError(f"`cost` must have shape [P, n, m], got {cost.shape}.")
  num_problems, n, m = cost.shape
  dtype = jnp.result_type(cost.dtype, jnp.float32)
  cost = cost.astype(dtype)
  log_a = log_weights(a, (num_problems, n), dtype)
  log_b = log_weights(b, (num_problems, m), dtype)
  diameter = jnp.sqrt(2 * jnp.max(cost, axis=(-2, -1)))
  final, values, eps, iterations, error = run_batched(
    schedule, gradient, cost, None, None, log_a, log_b, diameter
  )
  return SinkhornOutput(
    value=values["xy"],
    f=final["f"],
    g=final["g"],
    epsilon=eps,
    iterations=iterations,
    marginal_error=error,
    converged=error <= schedule.threshold,
  )
