"""Tests for mtpkd_jax.losses.task against independent NumPy references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.losses import task


def _np_cross_entropy(logits, labels):
  total = 0.0
  for row, label in zip(logits.astype(np.float64), labels, strict=True):
    shifted = row - row.max()
    total += np.log(np.sum(np.exp(shifted))) - shifted[label]
  return total / len(labels)


def _np_ccc(x, y):
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  n = len(x)
  mx, my = sum(x) / n, sum(y) / n
  cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / n
  vx = sum((a - mx) ** 2 for a in x) / n
  vy = sum((b - my) ** 2 for b in y) / n
  return 2 * cov / (vx + vy + (mx - my) ** 2)


@pytest.fixture
def rng():
  return np.random.default_rng(0)


def test_cross_entropy_matches_numpy(rng):
  logits = rng.normal(size=(6, 4)).astype(np.float32) * 3
  labels = rng.integers(0, 4, size=6)
  got = task.softmax_cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
  np.testing.assert_allclose(got, _np_cross_entropy(logits, labels), rtol=1e-5)


def test_ccc_matches_numpy_per_dimension(rng):
  x = rng.normal(size=(20, 3)).astype(np.float32)
  y = (0.5 * x + rng.normal(size=(20, 3)) + 0.3).astype(np.float32)
  want = [_np_ccc(x[:, d], y[:, d]) for d in range(3)]
  np.testing.assert_allclose(task.ccc(x, y), want, rtol=1e-5)
  np.testing.assert_allclose(task.ccc(x[:, 1], y[:, 1]), want[1], rtol=1e-5)


def test_ccc_closed_forms(rng):
  x = rng.normal(size=50).astype(np.float32)
  x -= x.mean()
  np.testing.assert_allclose(task.ccc(x, x), 1.0, rtol=1e-6)
  np.testing.assert_allclose(task.ccc(x, -x), -1.0, rtol=1e-6)
  # A shift lowers CCC (unlike Pearson): 2 var / (2 var + shift^2).
  var = np.var(x.astype(np.float64))
  np.testing.assert_allclose(task.ccc(x, x + 1.0), 2 * var / (2 * var + 1.0), rtol=1e-5)


def test_ccc_of_constants_is_finite():
  const = jnp.full((8,), 0.3)
  assert np.isfinite(task.ccc(const, const))
  grads = jax.jit(jax.grad(task.ccc_loss))(const, const)
  assert np.all(np.isfinite(grads))


def test_ccc_loss_reductions(rng):
  x = rng.normal(size=(30, 2)).astype(np.float32)
  y = (x + rng.normal(size=(30, 2))).astype(np.float32)
  per_dim = np.array([1 - _np_ccc(x[:, d], y[:, d]) for d in range(2)])
  np.testing.assert_allclose(task.ccc_loss(x, y), per_dim.mean(), rtol=1e-5)
  np.testing.assert_allclose(task.ccc_loss(x, y, reduction="sum"), per_dim.sum(), rtol=1e-5)
  np.testing.assert_allclose(task.ccc_loss(x, x), 0.0, atol=1e-6)


def test_ccc_loss_gradient_finite_at_identical_inputs(rng):
  x = jnp.asarray(rng.normal(size=(10, 2)), jnp.float32)
  grads = jax.jit(jax.grad(task.ccc_loss))(x, x)
  assert np.all(np.isfinite(grads))
  np.testing.assert_allclose(grads, 0.0, atol=1e-5)


def test_task_loss_classification(rng):
  logits = rng.normal(size=(5, 3)).astype(np.float32)
  labels = rng.integers(0, 3, size=5)
  batch = {"y": jnp.asarray(labels), "video": jnp.zeros((5, 7))}
  got = task.task_loss(jnp.asarray(logits), batch, "classification")
  np.testing.assert_allclose(got, _np_cross_entropy(logits, labels), rtol=1e-5)


@pytest.mark.parametrize("num_targets", [1, 2, 3])
def test_task_loss_regression_averages_one_minus_ccc_over_the_targets(rng, num_targets):
  outputs = rng.normal(size=(16, num_targets)).astype(np.float32)
  signs = np.array([1.0, -1.0, 0.5])[:num_targets]
  targets = (signs * outputs + rng.normal(size=(16, num_targets))).astype(np.float32)
  want = 1 - np.mean([_np_ccc(outputs[:, k], targets[:, k]) for k in range(num_targets)])
  batch = {"y": jnp.asarray(targets)}
  np.testing.assert_allclose(task.task_loss(outputs, batch, "regression"), want, rtol=1e-5)


def test_task_loss_jits_with_static_task(rng):
  logits = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  batch = {"y": jnp.array([0, 2, 1, 1])}
  jitted = jax.jit(functools.partial(task.task_loss, task="classification"))
  np.testing.assert_allclose(
    jitted(logits, batch), task.task_loss(logits, batch, "classification"), rtol=1e-6
  )
  jitted_ccc = jax.jit(task.ccc_loss, static_argnames="reduction")
  np.testing.assert_allclose(
    jitted_ccc(logits, logits + 1, reduction="sum"),
    task.ccc_loss(logits, logits + 1, reduction="sum"),
    rtol=1e-6,
  )


@pytest.mark.parametrize(
  ("call", "message"),
  [
    (lambda: task.ccc(jnp.zeros(4), jnp.zeros(5)), "`x` and `y`"),
    (lambda: task.ccc_loss(jnp.zeros((4, 2)), jnp.zeros((4, 3))), "`predictions`"),
    (lambda: task.ccc_loss(jnp.zeros(4), jnp.zeros(4), reduction="max"), "`reduction`"),
    (lambda: task.softmax_cross_entropy(jnp.zeros(4), jnp.zeros(4, int)), "`logits`"),
    (lambda: task.softmax_cross_entropy(jnp.zeros((4, 3)), jnp.zeros(5, int)), "`labels`"),
    (
      lambda: task.task_loss(jnp.zeros((4, 3)), {"y": jnp.zeros((4, 2))}, "regression"),
      "`outputs`",
    ),
    (lambda: task.task_loss(jnp.zeros((4, 2)), {}, "ranking"), "`task`"),
  ],
)
def test_errors_name_the_argument(call, message):
  with pytest.raises(ValueError, match=message):
    call()
