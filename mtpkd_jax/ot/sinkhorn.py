"""The fused solver: batched log-domain Sinkhorn over a leading problem axis.

All problems of a batch, and for a debiased divergence its three terms ``OT(a, b)``,
``OT(a, a)`` and ``OT(b, b)``, advance together in one loop: a ``lax.while_loop``
(:func:`check_every` iterations a trip), or, when the number of steps has a static bound (an
``Anneal`` schedule on clouds of bounded diameter, as in the MT-PKDOT loss; see
:func:`bounded_length`), a ``lax.scan`` whose trip count XLA knows, so that an accelerator
runs it without asking the host whether to go on. Every Sinkhorn transform of every term
of every problem is a block of one stacked cost tensor, so an iteration is a single batched
log-sum-exp (two with alternating updates), with no solver call per problem or term.
Problems that have finished (their schedule is over, or they converged) are frozen by a
mask, so a problem's result never depends on the other problems of the batch.

Conventions (those of GeomLoss and ott-jax): potentials ``f [P, n]``, ``g [P, m]``; the
entropic problem is ``min_π <π, C> + eps KL(π | a ⊗ b)``, whose value at the optimum is the
dual value ``<a, f> + <b, g>``; the plan is ``π = a ⊗ b · exp((f ⊕ g - C) / eps)``. The
Sinkhorn transform of ``g`` is ``T_f(g)_i = -eps log Σ_j b_j exp((g_j - C_ij) / eps)``.

Gradients. ``gradient="envelope"`` (default) differentiates the final extrapolation step
alone, in a ``jax.custom_vjp``: the loop is not differentiated and keeps no per-iteration
state. Each block's cost gets the plan of its own transform, ``d<w, T(φ)>/dC = π(T(φ), φ)``,
with the source potential ``φ`` held constant: for ``Fixed`` and ``Tolerance`` at the final
potentials (the envelope theorem, ``dOT/dC = π``), for ``Anneal`` at the last iterate before
the extrapolation (GeomLoss's rule: its last step runs with autograd on, on detached
potentials). Like GeomLoss's, these costs are built so that each carries the gradient of its
rows' points only (``C_xy = c(x, sg(y))``, ``C_yx = c(y, sg(x))``, ``C_xx = c(x, sg(x))``;
see :func:`run_batched`). ``gradient="unrolled"`` runs the same loop as a masked
``lax.scan`` of ``max_iterations`` steps (truncating a longer ``Anneal`` schedule) and
differentiates through every iteration (kept to compare against; memory grows with the
number of iterations). Marginal weights and epsilon are treated as constants.
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
    marginal_error: ``[P]`` L1 marginal error of the last iterate's plan, at ``epsilon``.
    converged: ``[P]`` whether ``marginal_error <= schedule.threshold``. Under ``Anneal``, a
      fixed schedule that stops whatever the error, this is a diagnostic, usually False at
      the default settings, and says nothing against the value (GeomLoss's); see
      :class:`~mtpkd_jax.ot.schedules.Anneal`.
  """

  value: jnp.ndarray
  f: jnp.ndarray
  g: jnp.ndarray
  epsilon: jnp.ndarray
  iterations: jnp.ndarray
  marginal_error: jnp.ndarray
  converged: jnp.ndarray


class _Blocks(NamedTuple):
  """Every Sinkhorn transform of a batch, as one stack of square problems.

  Block ``0`` updates ``g`` (cost ``C_yx``, from ``f``) and block ``1`` updates ``f`` (cost
  ``C_xy``, from ``g``); with debiasing, blocks ``2`` and ``3`` update ``f_xx`` and ``g_yy``
  (costs ``C_xx`` and ``C_yy``, each from itself). Rectangular problems are padded to
  ``N = max(n, m)`` points of weight zero (log-weight ``-inf``), which change no transform,
  so a single batched log-sum-exp advances every block of every problem.

  Attributes:
    cost: ``[K, P, N, N]``.
    log_w: ``[K, P, N]``, the log-weights of the measure each block's potential lives on.
  """

  cost: jnp.ndarray
  log_w: jnp.ndarray


# The block whose potential each block's transform reads: g <- f, f <- g, f_xx, g_yy <- self.
_SOURCE = (1, 0, 2, 3)


def _sources(first, last):
  """Indices of the source blocks of blocks ``first:last``."""
  return jnp.asarray(_SOURCE[first:last])


_NAMES = ("g", "f", "f_xx", "g_yy")


def _pad(x, size, axes, value=0.0):
  widths = [(0, size - x.shape[a]) if a in axes else (0, 0) for a in range(x.ndim)]
  return jnp.pad(x, widths, constant_values=value) if any(w[1] for w in widths) else x


def _blocks(cost_xy, cost_yx, cost_xx, cost_yy, log_a, log_b) -> _Blocks:
  size = max(cost_xy.shape[1:])
  costs, weights = [cost_yx, cost_xy], [log_b, log_a]
  if cost_xx is not None:
    costs, weights = costs + [cost_xx, cost_yy], weights + [log_a, log_b]
  return _Blocks(
    cost=jnp.stack([_pad(c, size, (1, 2)) for c in costs]),
    log_w=jnp.stack([_pad(w, size, (1,), -jnp.inf) for w in weights]),
  )


def _lse_max_shifted(z):
  """``log Σ_j exp(z_ij)`` over the last axis, shifted by the row maximum (two passes)."""
  zmax = jax.lax.stop_gradient(jnp.max(z, axis=-1))
  return zmax + jnp.log(jnp.sum(jnp.exp(z - zmax[..., None]), axis=-1))


def _transform(blocks, pots, eps, first=0, last=None, warm=True):
  """Sinkhorn transforms of blocks ``first:last`` of ``pots [K, P, N]``, in one batch.

  Block ``k``'s transform is ``-eps log Σ_j w_j exp((φ_j - C_kij) / eps)``, with ``φ`` and
  ``w`` the potential and weights of block ``_SOURCE[k]``. Returns ``[last - first, P, N]``.

  A log-sum-exp shifted by its row maximum reads the cost twice and materialises the shifted
  exponents in between. With ``warm``, the shift is instead the block's own current potential,
  ``-pots[k] / eps``, the transform's value at the fixed point: one fused pass over the cost.
  Near a Sinkhorn iterate every row's sum lies close to 1 (after ``g = T_g(f)`` each column of
  the plan sums to its weight, so every term of ``f``'s next row sums is at most ``N``, and
  symmetrically for ``g``); if any sum leaves ``[sqrt(tiny), sqrt(max)]`` of the dtype,
  where terms could under- or overflow (first iterations, a large epsilon step), the whole
  batch is recomputed with the maximum shift. Either way the result is the same log-sum-exp.
  The unrolled gradient differentiates the maximum shift alone (``warm=False``): the
  gradient of a ``lax.cond`` would keep both branches' residuals at every iteration. So do
  solves off a CPU (see :func:`one_pass_lse`).
  """
  last = pots.shape[0] if last is None else last
  source = _sources(first, last)
  h = blocks.log_w[source] + pots[source] / eps[:, None]
  cost = blocks.cost[first:last]

  def exponents(h, cost):
    return h[:, :, None, :] - cost / eps[:, None, None]

  if not warm:
    return -eps[:, None] * _lse_max_shifted(exponents(h, cost))
  shift = jax.lax.stop_gradient(-pots[first:last] / eps[:, None])
  sums = jnp.sum(jnp.exp(exponents(h, cost) - shift[..., None]), axis=-1)
  info = jnp.finfo(sums.dtype)
  in_range = jnp.all((sums >= jnp.sqrt(info.tiny)) & (sums <= jnp.sqrt(info.max)))
  lse = jax.lax.cond(
    in_range,
    lambda h, cost: shift + jnp.log(sums),
    # The fallback rebuilds the exponents itself, so that the warm pass never materialises them.
    lambda h, cost: _lse_max_shifted(exponents(h, cost)),
    h,
    cost,
  )
  return -eps[:, None] * lse


def _errors(blocks, pots, transformed, eps):
  """Each problem's L1 marginal error from every block's ``(φ, T(φ))``: ``[P]``.

  Block ``k``'s error is ``Σ_i |w_i exp((φ_i - T(φ)_i) / eps) - w_i|``. The cross term's
  plan has the errors of ``f`` and ``g`` on its two marginals; a symmetric term's plan, of
  the averaged potential, has twice its block's error (the plan is symmetric).
  """
  # In log space, so that padding (log-weight -inf) gives exactly 0 however large its ratio.
  scaled = jnp.exp(blocks.log_w + (pots - transformed) / eps[:, None])
  per_block = jnp.sum(jnp.abs(scaled - jnp.exp(blocks.log_w)), axis=-1)
  return jnp.max(jnp.concatenate([(per_block[0] + per_block[1])[None], 2 * per_block[2:]]), 0)


def _init(blocks, eps, averaged):
  """Potentials before the first iteration, ``[K, P, N]``.

  GeomLoss (``averaged``) starts from one transform of zero potentials. The alternating
  scheme starts from ``f = 0, g = T_g(0)``, so that ``g = T_g(f)`` holds at every iteration
  and the error of ``f`` alone is the cross plan's marginal error.
  """
  pots = _transform(blocks, jnp.zeros_like(blocks.log_w), eps, warm=False)
  return pots if averaged else pots.at[1].set(0.0)


def _iterate(blocks, pots, eps, averaged, warm):
  """One Sinkhorn iteration of every problem; returns ``(new_pots, error of pots)``.

  ``averaged`` (GeomLoss's symmetric updates): every block from the previous iterate in one
  batched transform, averaged with it. Otherwise ``f`` (with the symmetric blocks) first,
  then ``g = T_g(f)`` from the new ``f``. Symmetric blocks are always averaged. ``warm``:
  the one-pass log-sum-exp of :func:`_transform`.
  """
  if averaged:
    t = _transform(blocks, pots, eps, warm=warm)
    return 0.5 * (pots + t), _errors(blocks, pots, t, eps)
  t = _transform(blocks, pots, eps, first=1, warm=warm)
  new = jnp.concatenate([t[:1], 0.5 * (pots[2:] + t[1:])])
  g = _transform(blocks, jnp.concatenate([pots[:1], new]), eps, last=1, warm=warm)
  # g = T_g(f) held before this update, so block 0 adds no error.
  return jnp.concatenate([g, new]), _errors(blocks, pots, jnp.concatenate([pots[:1], t]), eps)


def _extrapolate(blocks, pots, eps, warm):
  """Final step: transforms of the last iterate, their dual values and its marginal error.

  Values: ``OT(a, b) = <a, T(g)> + <b, T(f)>``; a symmetric term's is ``2 <w, T(φ)>``.
  """
  final = _transform(blocks, pots, eps, warm=warm)
  dots = jnp.sum(jnp.exp(blocks.log_w) * final, axis=-1)
  values = {"xy": dots[0] + dots[1]}
  if pots.shape[0] > 2:
    values.update(xx=2 * dots[2], yy=2 * dots[3])
  return final, values, _errors(blocks, pots, final, eps)


def _epsilon_fn(schedule, diameter, num_problems, dtype, unrolled):
  """``step -> eps [P]`` and the per-problem number of steps ``[P]``.

  The envelope gradient's loop runs an ``Anneal`` schedule to its end; the unrolled
  gradient's scan, of static length ``max_iterations``, truncates a longer one.
  """
  if isinstance(schedule, schedules_lib.Anneal):
    return (
      lambda step: schedule.epsilon_at(step, diameter, truncate=unrolled).astype(dtype),
      schedule.num_steps(diameter, truncate=unrolled),
    )
  eps = jnp.full((num_problems,), schedule.target_epsilon, dtype)
  return (lambda step: eps), jnp.full((num_problems,), schedule.max_iterations, jnp.int32)


def check_every() -> int:
  """Iterations per trip of the solver's while loop: how often it asks whether to stop.

  On an accelerator every trip costs a round trip of the loop's predicate to the host, so
  several masked iterations share one (ott-jax's ``inner_iterations`` does the same); on a
  CPU the iterations run past the last problem's end would be paid in full. The results are
  the same either way: an iteration past a problem's end leaves it unchanged.
  """
  return 1 if jax.default_backend() == "cpu" else 4


def one_pass_lse() -> bool:
  """Whether the transforms try the one-pass log-sum-exp of :func:`_transform` (on a CPU).

  Its fallback is a ``lax.cond``, and on a GPU every conditional copies its predicate to the
  host and waits for the stream to drain (XLA's ``ConditionalThunk``): a round trip per
  transform, one or two per iteration. There, and on other accelerators, where it was not
  measured, the transforms take the two-pass form, which has no branch. The results are the
  same log-sum-exp either way.
  """
  return jax.default_backend() == "cpu"


def skip_finished_steps() -> bool:
  """Whether the bounded loop's steps past every problem's end are skipped (on a CPU).

  A step of the scan of :func:`bounded_length` after every problem of the batch has finished
  changes nothing; a CPU would still pay for it in full (at the loss's default sizes, 2 of 9
  steps, about 8 % of its time), so there each step runs inside a ``lax.cond`` that skips it.
  On a GPU a conditional is a round trip to the host (see :func:`one_pass_lse`), the very
  thing the bound removes, so there the steps run masked.
  """
  return jax.default_backend() == "cpu"


def bounded_length(schedule, gradient, max_diameter, dtype) -> int | None:
  """Static length of the envelope gradient's loop for clouds no wider than ``max_diameter``.

  An ``Anneal`` schedule's length depends on the clouds' diameter, a traced value, so its loop
  cannot know its trip count, and on an accelerator a ``lax.while_loop`` asks the host whether
  to go on at every trip. Given an upper bound on the diameter (the MT-PKDOT loss knows one:
  its points are shifted cosine similarities), the schedule of the bound is the longest, and
  the loop becomes a ``lax.scan`` of that many steps, each problem's steps past its own
  schedule masked: the same potentials, values and ``iterations``, and a loop that XLA runs
  without the host.

  Args:
    schedule: a :mod:`~mtpkd_jax.ot.schedules` schedule.
    gradient: ``envelope | unrolled``.
    max_diameter: a bound on the clouds' diameter, or ``None``.
    dtype: the dtype of the diameters, in which the data's schedule length is computed.

  Returns:
    The schedule's length at ``max_diameter`` under ``Anneal`` with ``gradient="envelope"``
    and a bound; otherwise ``None`` (the unrolled gradient's scan already has a static
    length, and ``Fixed`` and ``Tolerance`` do not depend on the diameter).
  """
  if max_diameter is None or gradient != "envelope":
    return None
  if not isinstance(schedule, schedules_lib.Anneal):
    return None
  if not max_diameter > 0:
    raise ValueError(f"`max_diameter` must be positive, got {max_diameter!r}.")
  with jax.ensure_compile_time_eval():
    return int(schedule.num_steps(jnp.asarray(max_diameter, dtype)))


def _loop(schedule, unrolled, warm, blocks, diameter, length):
  """Runs the schedule up to the extrapolation; returns ``(pots, iterations)``.

  Three forms, the same iterates: the unrolled gradient's ``lax.scan`` of ``max_iterations``
  masked steps; with a bounded ``length`` (:func:`bounded_length`), a ``lax.scan`` of that
  many steps, masked, or skipped where :func:`skip_finished_steps`; otherwise a
  ``lax.while_loop`` of :func:`check_every` masked iterations a trip, until every problem
  has finished.
  """
  num_problems, dtype = blocks.log_w.shape[1], blocks.log_w.dtype
  averaged = isinstance(schedule, schedules_lib.Anneal)
  tolerance = isinstance(schedule, schedules_lib.Tolerance)
  epsilon_at, num_steps = _epsilon_fn(schedule, diameter, num_problems, dtype, unrolled)

  def active(state):
    step, _, error, _ = state
    act = step < num_steps
    return act & (error > schedule.threshold) if tolerance else act

  def masked_iteration(state):
    step, pots, error, iterations = state
    act = active(state)
    new_pots, new_error = _iterate(blocks, pots, epsilon_at(step), averaged, warm)
    return (
      step + 1,
      jnp.where(act[:, None], new_pots, pots),
      jnp.where(act, new_error, error),
      iterations + act.astype(jnp.int32),
    )

  def body(state):
    for _ in range(check_every()):
      state = masked_iteration(state)
    return state

  state = (
    jnp.zeros((), jnp.int32),
    _init(blocks, epsilon_at(0), averaged),
    jnp.full((num_problems,), jnp.inf, dtype),
    jnp.zeros((num_problems,), jnp.int32),
  )

  def skipping_iteration(state):
    def skip(state):
      return (state[0] + 1, *state[1:])

    return jax.lax.cond(jnp.any(active(state)), masked_iteration, skip, state)

  if unrolled:
    state, _ = jax.lax.scan(
      lambda s, _: (masked_iteration(s), None), state, None, length=schedule.max_iterations
    )
  elif length is not None:
    step_fn = skipping_iteration if skip_finished_steps() else masked_iteration
    state, _ = jax.lax.scan(lambda s, _: (step_fn(s), None), state, None, length=length)
  else:
    state = jax.lax.while_loop(lambda s: jnp.any(active(s)), body, state)
  _, pots, _, iterations = state
  return pots, iterations


def _run(schedule, unrolled, length, blocks, diameter):
  """Runs the schedule; returns ``((final_pots, values, eps, iterations, error), pots)``."""
  warm = not unrolled and one_pass_lse()
  pots, iterations = _loop(schedule, unrolled, warm, blocks, diameter, length)
  eps = jnp.full(iterations.shape, schedule.target_epsilon, blocks.log_w.dtype)
  final, values, error = _extrapolate(blocks, pots, eps, warm)
  return (final, values, eps, iterations, error), pots


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _run_envelope(schedule, length, blocks, diameter):
  return _run(schedule, False, length, blocks, diameter)[0]


def _run_envelope_fwd(schedule, length, blocks, diameter):
  out, pots = _run(schedule, False, length, blocks, diameter)
  final, _, eps, _, _ = out
  # The potentials the extrapolation's gradient holds constant (see the module docstring).
  held = pots if isinstance(schedule, schedules_lib.Anneal) else final
  return out, (blocks, final, held, eps, diameter)


def _plan(cost, log_a, log_b, f, g, eps):
  """``π = a ⊗ b · exp((f ⊕ g - C) / eps)``: ``[..., n, m]`` (``eps`` of shape ``[P]``)."""
  return jnp.exp(
    log_a[..., :, None]
    + log_b[..., None, :]
    + (f[..., :, None] + g[..., None, :] - cost) / eps[:, None, None]
  )


def transport_plan(cost: jnp.ndarray, out: SinkhornOutput, a=None, b=None) -> jnp.ndarray:
  """The plan ``[P, n, m]`` of a :func:`solve` result (``a``, ``b`` as given to it)."""
  num_problems, n, m = cost.shape
  log_a = log_weights(a, (num_problems, n), out.f.dtype)
  log_b = log_weights(b, (num_problems, m), out.g.dtype)
  return _plan(cost, log_a, log_b, out.f, out.g, out.epsilon)


def _run_envelope_bwd(schedule, length, residuals, cotangents):
  """Block ``k``'s cost gets ``π(T_k(φ), φ)``, ``φ`` its source's held potential.

  The cross value ``<a, T(g)> + <b, T(f)>`` holds each of blocks 0 and 1 once; a symmetric
  value ``2 <w, T(φ)>`` holds its block twice.
  """
  del schedule, length
  blocks, final, held, eps, diameter = residuals
  ct_values = cotangents[1]
  scale = [ct_values["xy"], ct_values["xy"]]
  if "xx" in ct_values:
    scale += [2 * ct_values["xx"], 2 * ct_values["yy"]]
  # One plan per block, so that XLA drops the plans of blocks whose points need no gradient.
  grad_cost = jnp.stack(
    [
      s[:, None, None]
      * _plan(blocks.cost[k], blocks.log_w[k], blocks.log_w[j], final[k], held[j], eps)
      for k, (j, s) in enumerate(zip(_SOURCE, scale, strict=False))
    ]
  )
  return _Blocks(grad_cost, jnp.zeros_like(blocks.log_w)), jnp.zeros_like(diameter)


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
  cost_yx: jnp.ndarray,
  cost_xx: jnp.ndarray | None,
  cost_yy: jnp.ndarray | None,
  log_a: jnp.ndarray,
  log_b: jnp.ndarray,
  diameter: jnp.ndarray,
  max_diameter: float | None = None,
):
  """Solves ``P`` problems (and their debiasing terms when given) in one loop.

  With ``gradient="envelope"`` each cost must carry the gradient of its rows' points only,
  as GeomLoss builds them: ``C_xy = c(x, sg(y))``, ``C_yx = c(y, sg(x))``,
  ``C_xx = c(x, sg(x))``, ``C_yy = c(y, sg(y))`` (``sg``: ``jax.lax.stop_gradient``); a
  single cost matrix ``C`` is passed as ``C_xy = C``, ``C_yx = sg(C)ᵀ``. With ``unrolled``,
  the costs carry all their gradients.

  Args:
    schedule: a :mod:`~mtpkd_jax.ot.schedules` schedule.
    gradient: ``envelope | unrolled``.
    cost_xy: Array of shape ``[P, n, m]``: the cost of ``f``'s transform.
    cost_yx: Array of shape ``[P, m, n]``, equal to ``cost_xyᵀ``: the cost of ``g``'s.
    cost_xx: Array of shape ``[P, n, n]`` (symmetric), or ``None``.
    cost_yy: Array of shape ``[P, m, m]`` (symmetric), or ``None`` (with ``cost_xx``).
    log_a: Array of shape ``[P, n]``, log-weights of the first measures.
    log_b: Array of shape ``[P, m]``, log-weights of the second measures.
    diameter: Array of shape ``[P]``: the clouds' diameters (used by ``Anneal`` only).
    max_diameter: a static bound on ``diameter``, or ``None``. Under ``Anneal`` with the
      envelope gradient, the loop is then a scan of the bound's schedule length
      (:func:`bounded_length`), whose trip count XLA knows; a diameter above the bound is
      annealed as if it were the bound.

  Returns:
    ``(potentials, values, eps, iterations, marginal_error)``: dicts keyed by ``f, g``
    (and ``f_xx, g_yy``) and ``xy`` (and ``xx, yy``), then arrays of shape ``[P]``.
  """
  if gradient not in GRADIENTS:
    raise ValueError(f"`gradient` must be one of {GRADIENTS}, got {gradient!r}.")
  blocks = _blocks(cost_xy, cost_yx, cost_xx, cost_yy, log_a, log_b)
  diameter = jax.lax.stop_gradient(diameter)
  length = bounded_length(schedule, gradient, max_diameter, diameter.dtype)
  if length is not None:
    diameter = jnp.minimum(diameter, max_diameter)
  if gradient == "unrolled":
    (final, values, eps, iterations, error), _ = _run(schedule, True, None, blocks, diameter)
  else:
    final, values, eps, iterations, error = _run_envelope(schedule, length, blocks, diameter)
  sizes = {"f": log_a.shape[1], "g": log_b.shape[1], "f_xx": log_a.shape[1], "g_yy": log_b.shape[1]}
  potentials = {
    name: jax.lax.stop_gradient(pot[:, : sizes[name]])
    for name, pot in zip(_NAMES, final, strict=False)
  }
  return potentials, values, eps, iterations, error


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
    gradient: ``envelope | unrolled``. The envelope gradient w.r.t. ``cost`` is the plan
      of ``f``'s final transform: ``π`` for ``Fixed`` and ``Tolerance``; for ``Anneal``,
      GeomLoss's gradient w.r.t. the first cloud's points (``π(T(g), g)`` with ``g`` the
      last iterate, whose rows sum to ``a``).

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
  cost_yx = jnp.swapaxes(cost if gradient == "unrolled" else jax.lax.stop_gradient(cost), 1, 2)
  final, values, eps, iterations, error = run_batched(
    schedule, gradient, cost, cost_yx, None, None, log_a, log_b, diameter
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
