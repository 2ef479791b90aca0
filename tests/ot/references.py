"""Independent NumPy references for the OT tests (no mtpkd_jax code).

POT, the third reference, is wrapped in :mod:`mtpkd_jax.bench.pot`, shared with the benchmark.
"""

import numpy as np


def lse(z, axis):
  zmax = z.max(axis=axis, keepdims=True)
  return (zmax + np.log(np.exp(z - zmax).sum(axis=axis, keepdims=True))).squeeze(axis)


def half_sq_dist(u, v):
  return 0.5 * ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)


def plan_marginal_error(cost, a, b, f, g, eps):
  """L1 marginal error ``‖π 1 - a‖₁ + ‖πᵀ 1 - b‖₁`` of ``π = a ⊗ b · exp((f ⊕ g - C) / ε)``."""
  plan = a[:, None] * b[None, :] * np.exp((f[:, None] + g[None, :] - cost) / eps)
  return np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - b).sum()


def sinkhorn_marginal_errors(cost, a, b, eps, iterations, symmetric=False):
  """Marginal errors of the iterates ``0..iterations`` of log-domain Sinkhorn at constant ε.

  Alternating updates ``f = T_f(g)``, then ``g = T_g(f)``, from ``f = 0, g = T_g(0)``; or,
  with ``symmetric`` (``a = b``, ``C = Cᵀ``, the plan ``π(f, f)``), GeomLoss's averaged
  update ``f = ½ (f + T(f))`` from ``f = T(0)``.

  Returns:
    Array of shape ``[iterations + 1]``: :func:`plan_marginal_error` of each iterate.
  """

  def transform(h, c, log_w):  # -ε log Σ_j w_j exp((h_j - C_ij) / ε)
    return -eps * lse(log_w[None, :] + (h[None, :] - c) / eps, axis=1)

  log_a, log_b = np.log(a), np.log(b)
  if symmetric:
    f = transform(np.zeros(len(a)), cost, log_a)
    errors = [plan_marginal_error(cost, a, a, f, f, eps)]
    for _ in range(iterations):
      f = 0.5 * (f + transform(f, cost, log_a))
      errors.append(plan_marginal_error(cost, a, a, f, f, eps))
    return np.array(errors)
  f = np.zeros(len(a))
  g = transform(f, cost.T, log_a)
  errors = [plan_marginal_error(cost, a, b, f, g, eps)]
  for _ in range(iterations):
    f = transform(g, cost, log_b)
    g = transform(f, cost.T, log_a)
    errors.append(plan_marginal_error(cost, a, b, f, g, eps))
  return np.array(errors)


def geomloss_epsilon_list(diameter, blur, scaling, p=2):
  """Transcription of ``geomloss.utils.epsilon_schedule``."""
  return (
    [diameter**p]
    + [np.exp(e) for e in np.arange(p * np.log(diameter), p * np.log(blur), p * np.log(scaling))]
    + [blur**p]
  )


def geomloss_sinkhorn(x, y, blur, scaling, debias=True, diameter=None):
  """Transcription of GeomLoss's ``SamplesLoss("sinkhorn", p=2, blur, scaling)``, with its gradient.

  Follows ``geomloss.sinkhorn_divergence.sinkhorn_loop`` (tensorised softmin, symmetric
  updates, final extrapolation) and ``sinkhorn_cost`` for uniform weights. The gradient is
  that of GeomLoss's autograd: the loop runs without it; the last extrapolation runs with it,
  on the detached potentials, through costs built as ``cost(x, y.detach())``,
  ``cost(y, x.detach())``, ``cost(x, x.detach())``, ``cost(y, y.detach())``. A softmin's
  derivative w.r.t. its cost row is the softmax weight of each column, so
  ``d<a, f>/dx_i = Σ_j π_ij (x_i - y_j)`` with ``π_ij = a_i b_j exp((f_i + g_j - C_ij) / ε)``,
  ``f`` the extrapolated and ``g`` the detached potential. ``diameter``, when given, replaces
  the clouds' own as the schedule's start.

  Returns:
    ``(value, steps, grad_x, grad_y, marginal_error)``: the loss, the length of the epsilon
    list, the gradients w.r.t. ``x [n, d]`` and ``y [m, d]``, and the largest of the terms'
    :func:`plan_marginal_error` at ``blur²`` of the last iterate (before the extrapolation).
  """
  a_log = np.full(len(x), -np.log(len(x)))
  b_log = np.full(len(y), -np.log(len(y)))
  c_xx, c_yy, c_xy = half_sq_dist(x, x), half_sq_dist(y, y), half_sq_dist(x, y)
  c_yx = c_xy.T
  points = np.concatenate([x, y])
  if diameter is None:
    diameter = np.linalg.norm(points.max(0) - points.min(0))
  eps_list = geomloss_epsilon_list(diameter, blur, scaling)

  def softmin(eps, c, h):
    return -eps * lse(h[None, :] - c / eps, axis=1)

  eps = eps_list[0]
  g_ab, f_ba = softmin(eps, c_yx, a_log), softmin(eps, c_xy, b_log)
  f_aa, g_bb = softmin(eps, c_xx, a_log), softmin(eps, c_yy, b_log)
  for eps in eps_list:
    ft_ba = softmin(eps, c_xy, b_log + g_ab / eps)
    gt_ab = softmin(eps, c_yx, a_log + f_ba / eps)
    ft_aa = softmin(eps, c_xx, a_log + f_aa / eps)
    gt_bb = softmin(eps, c_yy, b_log + g_bb / eps)
    f_ba, g_ab = 0.5 * (f_ba + ft_ba), 0.5 * (g_ab + gt_ab)
    f_aa, g_bb = 0.5 * (f_aa + ft_aa), 0.5 * (g_bb + gt_bb)
  a, b = np.exp(a_log), np.exp(b_log)
  error = plan_marginal_error(c_xy, a, b, f_ba, g_ab, eps)
  if debias:
    error = max(
      error,
      plan_marginal_error(c_xx, a, a, f_aa, f_aa, eps),
      plan_marginal_error(c_yy, b, b, g_bb, g_bb, eps),
    )

  def extrapolate(u, v, c, u_log, v_log, held):
    """``T(held)`` on ``u``'s points and its gradient ``Σ_j π_ij (u_i - v_j)``."""
    new = softmin(eps, c, v_log + held / eps)
    plan = np.exp(u_log[:, None] + v_log[None, :] + (new[:, None] + held[None, :] - c) / eps)
    return new, plan.sum(1)[:, None] * u - plan @ v

  (f_ba, gx), (g_ab, gy) = (
    extrapolate(x, y, c_xy, a_log, b_log, g_ab),
    extrapolate(y, x, c_yx, b_log, a_log, f_ba),
  )
  value = (a * f_ba).sum() + (b * g_ab).sum()
  if debias:
    (f_aa, gxx), (g_bb, gyy) = (
      extrapolate(x, x, c_xx, a_log, a_log, f_aa),
      extrapolate(y, y, c_yy, b_log, b_log, g_bb),
    )
    value -= (a * f_aa).sum() + (b * g_bb).sum()
    gx, gy = gx - gxx, gy - gyy
  return value, len(eps_list), gx, gy, error
