"""Tests of the fused solver against POT, closed forms and finite differences."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.bench import pot
from mtpkd_jax.ot import schedules, sinkhorn
from tests.ot import references

TIGHT = schedules.Tolerance(threshold=1e-12, max_iterations=20_000, epsilon=0.5)


def _random_problem(seed, p=3, n=12, m=9, d=3, separated=False):
  rng = np.random.default_rng(seed)
  if separated:
    x = rng.normal(scale=0.2, size=(p, n, d))
    y = rng.normal(scale=0.2, size=(p, m, d)) + 4.0
  else:
    x, y = rng.normal(size=(p, n, d)), rng.normal(size=(p, m, d))
  a = rng.uniform(0.5, 1.5, size=(p, n))
  b = rng.uniform(0.5, 1.5, size=(p, m))
  return x, y, a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)


def _linear_cost(out, cost, a, b):
  plan = (
    np.asarray(a)[..., :, None]
    * np.asarray(b)[..., None, :]
    * np.exp(
      (np.asarray(out.f)[..., :, None] + np.asarray(out.g)[..., None, :] - cost)
      / np.asarray(out.epsilon)[:, None, None]
    )
  )
  return (plan * cost).sum((-2, -1))


@pytest.mark.parametrize("separated,eps", [(False, 0.3), (True, 0.5), (True, 0.05)])
def test_solve_equals_pot_log_domain_sinkhorn(separated, eps):
  x, y, a, b = _random_problem(0, separated=separated)
  cost = np.stack([references.half_sq_dist(x[p], y[p]) for p in range(3)])
  schedule = schedules.Tolerance(threshold=1e-11, max_iterations=50_000, epsilon=eps)
  with jax.enable_x64(True):
    out = sinkhorn.solve(jnp.asarray(cost), jnp.asarray(a), jnp.asarray(b), schedule=schedule)
    assert np.all(out.converged)
    linear = _linear_cost(out, cost, a, b)
  for p in range(3):
    value, pot_linear, _ = pot.entropic_ot(cost[p], eps, a[p], b[p])
    np.testing.assert_allclose(out.value[p], value, rtol=1e-5)
    np.testing.assert_allclose(linear[p], pot_linear, rtol=1e-5)


def test_float32_solve_is_close_to_pot():
  x, y, a, b = _random_problem(1)
  cost = np.stack([references.half_sq_dist(x[p], y[p]) for p in range(3)])
  schedule = schedules.Tolerance(threshold=1e-5, max_iterations=5000, epsilon=0.3)
  out = sinkhorn.solve(
    jnp.asarray(cost, jnp.float32), jnp.asarray(a), jnp.asarray(b), schedule=schedule
  )
  want = [pot.entropic_ot(cost[p], 0.3, a[p], b[p]).value for p in range(3)]
  np.testing.assert_allclose(out.value, want, rtol=1e-4)


def test_float32_separated_clouds_at_small_epsilon_are_close_to_pot():
  # The first iterations' row sums underflow float32 when shifted by the current potentials
  # (the one-pass log-sum-exp): the solver must fall back to the max shift, and still agree.
  x, y, a, b = _random_problem(6, separated=True)
  cost = np.stack([references.half_sq_dist(x[p], y[p]) for p in range(3)])
  schedule = schedules.Tolerance(threshold=1e-4, max_iterations=20_000, epsilon=0.02)
  out = sinkhorn.solve(
    jnp.asarray(cost, jnp.float32), jnp.asarray(a), jnp.asarray(b), schedule=schedule
  )
  assert np.all(out.converged)
  want = [pot.entropic_ot(cost[p], 0.02, a[p], b[p]).value for p in range(3)]
  np.testing.assert_allclose(out.value, want, rtol=1e-4)


def test_rectangular_float32_problems_stay_finite_at_tiny_epsilon():
  # n != m pads the smaller side with zero-weight points: they must not turn into NaN when
  # eps is tiny against the cost (ratios of e^(cost / eps) overflow float32).
  x, y, a, b = _random_problem(3, n=7, m=12, separated=True)
  cost = jnp.asarray(np.stack([references.half_sq_dist(x[p], y[p]) for p in range(3)]), "float32")
  for schedule in (schedules.Fixed(iterations=30, epsilon=1e-3), schedules.Anneal(blur=0.03)):
    out = sinkhorn.solve(cost, jnp.asarray(a), jnp.asarray(b), schedule=schedule)
    for name in ("value", "f", "g", "marginal_error"):
      assert np.all(np.isfinite(getattr(out, name))), (schedule, name)
    grad = jax.grad(lambda c, s=schedule: sinkhorn.solve(c, schedule=s).value.sum())(cost)
    assert np.all(np.isfinite(grad))


def test_fixed_schedule_runs_exactly_its_iterations():
  x, y, _, _ = _random_problem(2)
  cost = jnp.asarray(np.stack([references.half_sq_dist(x[p], y[p]) for p in range(3)]))
  out = sinkhorn.solve(cost, schedule=schedules.Fixed(iterations=7, epsilon=0.5))
  np.testing.assert_array_equal(out.iterations, 7)


def test_batched_problems_equal_problems_solved_alone():
  x, y, a, b = _random_problem(3, separated=True)
  cost = np.stack([references.half_sq_dist(x[p], y[p]) for p in range(3)])
  schedule = schedules.Tolerance(threshold=1e-6, max_iterations=5000, epsilon=0.2)
  with jax.enable_x64(True):
    batched = sinkhorn.solve(jnp.asarray(cost), jnp.asarray(a), jnp.asarray(b), schedule=schedule)
    for p in range(3):
      alone = sinkhorn.solve(
        jnp.asarray(cost[p : p + 1]),
        jnp.asarray(a[p : p + 1]),
        jnp.asarray(b[p : p + 1]),
        schedule=schedule,
      )
      assert int(alone.iterations[0]) == int(batched.iterations[p])
      np.testing.assert_allclose(alone.value[0], batched.value[p], rtol=1e-12)


def _solve_grad_and_conditionals(cost, a, b, schedule):
  """``solve``'s output, its value's gradient and the compiled program's conditionals."""
  args = jnp.asarray(cost), jnp.asarray(a), jnp.asarray(b)

  def solve(c):
    return sinkhorn.solve(c, *args[1:], schedule=schedule)

  def solve_and_grad(c):
    return solve(c), jax.grad(lambda c: jnp.sum(solve(c).value))(c)

  fn = jax.jit(solve_and_grad)
  return *fn(args[0]), fn.lower(args[0]).compile().as_text().count(" conditional(")


@pytest.mark.parametrize(
  "schedule",
  [
    schedules.Fixed(iterations=7, epsilon=0.5),
    schedules.Tolerance(threshold=1e-6, max_iterations=5000, epsilon=0.2),
    schedules.Anneal(blur=0.3, scaling=0.5),
  ],
  ids=["fixed", "tolerance", "anneal"],
)
@pytest.mark.parametrize("variant", ["three_a_trip", "gpu"])
def test_loop_and_log_sum_exp_forms_change_nothing(schedule, variant, monkeypatch):
  # Costs of three scales: the problems converge after different numbers of iterations, and
  # 3 iterations a trip run past every problem's end (7 is no multiple of 3). On a GPU the
  # solver runs 4 iterations a trip and the two-pass log-sum-exp, which has no conditional
  # (each one there is a round trip to the host).
  x, y, a, b = _random_problem(3)
  cost = np.stack([s * references.half_sq_dist(x[p], y[p]) for p, s in enumerate((1, 3, 9))])
  with jax.enable_x64(True):
    one, grad_one, conditionals_one = _solve_grad_and_conditionals(cost, a, b, schedule)
    if variant == "gpu":
      monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    else:
      monkeypatch.setattr(sinkhorn, "check_every", lambda: 3)
    other, grad_other, conditionals = _solve_grad_and_conditionals(cost, a, b, schedule)
  assert conditionals_one > 0
  assert (conditionals == 0) == (variant == "gpu")
  if isinstance(schedule, schedules.Tolerance):
    assert len(set(np.asarray(one.iterations).tolist())) > 1
  np.testing.assert_array_equal(other.iterations, one.iterations)
  for name in ("value", "f", "g", "marginal_error"):
    # The marginal error (about 1e-6 at convergence) is a difference: compared absolutely.
    np.testing.assert_allclose(getattr(other, name), getattr(one, name), rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(grad_other, grad_one, rtol=1e-12, atol=1e-15)


def _value_of_points(x, y, schedule, gradient):
  cost = 0.5 * jnp.sum((x[:, :, None, :] - y[:, None, :, :]) ** 2, -1)
  return jnp.sum(sinkhorn.solve(cost, schedule=schedule, gradient=gradient).value)


def test_envelope_gradient_matches_central_finite_differences():
  x, y, _, _ = _random_problem(4, p=2, n=6, m=5)
  with jax.enable_x64(True):
    x, y = jnp.asarray(x), jnp.asarray(y)
    f = jax.jit(functools.partial(_value_of_points, schedule=TIGHT, gradient="envelope"))
    grad = jax.grad(f)(x, y)
    h = 1e-5
    for idx in [(0, 0, 0), (0, 3, 2), (1, 5, 1), (1, 2, 0)]:
      bump = jnp.zeros_like(x).at[idx].set(h)
      fd = (f(x + bump, y) - f(x - bump, y)) / (2 * h)
      np.testing.assert_allclose(grad[idx], fd, rtol=1e-5, atol=1e-9)


def test_envelope_gradient_equals_unrolled_autodiff_at_convergence():
  x, y, _, _ = _random_problem(5, p=2, n=6, m=5)
  schedule = schedules.Fixed(iterations=400, epsilon=0.5)
  with jax.enable_x64(True):
    x, y = jnp.asarray(x), jnp.asarray(y)
    g_env = jax.grad(_value_of_points, argnums=(0, 1))(x, y, schedule, "envelope")
    g_unr = jax.grad(_value_of_points, argnums=(0, 1))(x, y, schedule, "unrolled")
  for ge, gu in zip(g_env, g_unr, strict=True):
    np.testing.assert_allclose(ge, gu, rtol=1e-7, atol=1e-10)


def _temp_bytes(gradient, iterations):
  schedule = schedules.Fixed(iterations=iterations, epsilon=0.5)
  x = jnp.ones((2, 64, 4))
  y = jnp.zeros((2, 64, 4))
  fn = jax.jit(jax.grad(functools.partial(_value_of_points, schedule=schedule, gradient=gradient)))
  return fn.lower(x, y).compile().memory_analysis().temp_size_in_bytes


def test_envelope_gradient_holds_no_per_iteration_state():
  assert _temp_bytes("envelope", 1000) == _temp_bytes("envelope", 10)
  assert _temp_bytes("unrolled", 200) > 10 * _temp_bytes("envelope", 200)


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="cost"):
    sinkhorn.solve(jnp.ones((3, 3)))
  with pytest.raises(ValueError, match="gradient"):
    sinkhorn.solve(jnp.ones((1, 3, 3)), gradient="implicit")
  with pytest.raises(ValueError, match="shape"):
    sinkhorn.solve(jnp.ones((1, 3, 3)), a=jnp.ones((1, 4)) / 4)
