"""Tests for mtpkd_jax.losses.distill against independent NumPy references."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.losses import distill


def _f64(*arrays):
  return [np.asarray(a, np.float64) for a in arrays]


def _np_cosine_distance(z_s, z_t):
  total = 0.0
  for s, t in zip(*_f64(z_s, z_t), strict=True):
    norms = np.linalg.norm(s) * np.linalg.norm(t)
    total += 1.0 - (s @ t / norms if norms > 0 else 0.0)
  return total / len(z_s)


def _np_softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def _np_logit_kd(logits_s, logits_t, temperature):
  total = 0.0
  for s, t in zip(*_f64(logits_s, logits_t), strict=True):
    p_s, p_t = _np_softmax(s / temperature), _np_softmax(t / temperature)
    total += sum(pt * np.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
  return temperature**2 * total / len(logits_s)


def _np_spkd(z_s, z_t):
  def normalised_gram(z):
    g = z @ z.T
    return g / np.linalg.norm(g, axis=1, keepdims=True)

  z_s, z_t = _f64(z_s, z_t)
  return np.sum((normalised_gram(z_t) - normalised_gram(z_s)) ** 2) / len(z_s) ** 2


def _smooth_l1(a, b):
  diff = abs(a - b)
  return 0.5 * diff**2 if diff < 1 else diff - 0.5


def _np_rkd(z_s, z_t, distance_weight=25.0, angle_weight=50.0):
  z_s, z_t = _f64(z_s, z_t)
  b = len(z_s)

  def distances(z):
    d = np.array([[np.linalg.norm(z[i] - z[j]) for j in range(b)] for i in range(b)])
    return d / (d.sum() / (b * (b - 1)))

  def angles(z):
    a = np.zeros((b, b, b))
    for i, j, k in itertools.product(range(b), repeat=3):
      u, v = z[j] - z[i], z[k] - z[i]
      if j != i and k != i:
        a[i, j, k] = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
    return a

  d_s, d_t = distances(z_s), distances(z_t)
  a_s, a_t = angles(z_s), angles(z_t)
  distance = np.mean([_smooth_l1(d_s[i, j], d_t[i, j]) for i in range(b) for j in range(b)])
  angle = np.mean([_smooth_l1(a_s[idx], a_t[idx]) for idx in itertools.product(range(b), repeat=3)])
  return distance_weight * distance + angle_weight * angle


def _np_mmd(x, y, num_kernels=5, multiplier=2.0, bandwidth=None):
  """Follows the DAN reference code: base bandwidth divided by multiplier^(num // 2)."""
  x, y = _f64(x, y)
  pooled = np.concatenate([x, y])
  num = len(pooled)
  d2 = np.array([[np.sum((p - q) ** 2) for q in pooled] for p in pooled])
  if bandwidth is None:
    bandwidth = d2.sum() / (num**2 - num)
  bandwidth /= multiplier ** (num_kernels // 2)
  k = sum(np.exp(-d2 / (bandwidth * multiplier**i)) for i in range(num_kernels))
  n = len(x)
  return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


@pytest.fixture
def rng():
  return np.random.default_rng(0)


def _pair(rng, batch=6, dim_s=4, dim_t=4):
  z_s = rng.normal(size=(batch, dim_s)).astype(np.float32)
  z_t = rng.normal(size=(batch, dim_t)).astype(np.float32)
  return jnp.asarray(z_s), jnp.asarray(z_t)


# Each loss as a function of (student, teacher) with fixed hyper-parameters.
LOSSES = {
  "cosine_distance": distill.cosine_distance,
  "logit_kd": lambda s, t: distill.logit_kd(s, t, temperature=2.0),
  "similarity_preserving": distill.similarity_preserving,
  "relational": distill.relational,
  "mmd": distill.mmd,
  "hallucination_mse": lambda s, t: distill.hallucination_loss(s, t, kind="mse"),
  "hallucination_mmd": lambda s, t: distill.hallucination_loss(s, t, kind="mmd"),
}


def test_cosine_distance_matches_numpy(rng):
  z_s, z_t = _pair(rng)
  z_s = z_s.at[2].set(0.0)  # A zero vector counts as cosine 0.
  np.testing.assert_allclose(
    distill.cosine_distance(z_s, z_t), _np_cosine_distance(z_s, z_t), rtol=1e-5
  )
  np.testing.assert_allclose(distill.cosine_distance(z_t, 3.0 * z_t), 0.0, atol=1e-6)
  np.testing.assert_allclose(distill.cosine_distance(z_t, -z_t), 2.0, rtol=1e-6)


def test_logit_kd_matches_numpy(rng):
  logits_s, logits_t = _pair(rng, dim_s=5, dim_t=5)
  for temperature in (1.0, 4.0):
    np.testing.assert_allclose(
      distill.logit_kd(3 * logits_s, 3 * logits_t, temperature),
      _np_logit_kd(3 * logits_s, 3 * logits_t, temperature),
      rtol=1e-5,
    )
  np.testing.assert_allclose(distill.logit_kd(logits_t, logits_t, 4.0), 0.0, atol=1e-6)


def test_similarity_preserving_matches_numpy(rng):
  z_s, z_t = _pair(rng, dim_s=3, dim_t=7)
  np.testing.assert_allclose(distill.similarity_preserving(z_s, z_t), _np_spkd(z_s, z_t), rtol=1e-5)
  np.testing.assert_allclose(distill.similarity_preserving(z_t, z_t), 0.0, atol=1e-7)


def test_similarity_preserving_invariant_to_global_scale(rng):
  z_s, z_t = _pair(rng, dim_s=3, dim_t=7)
  base = distill.similarity_preserving(z_s, z_t)
  np.testing.assert_allclose(distill.similarity_preserving(5.0 * z_s, z_t), base, rtol=1e-5)
  np.testing.assert_allclose(distill.similarity_preserving(z_s, 0.1 * z_t), base, rtol=1e-5)


def test_relational_matches_explicit_triplet_loops(rng):
  z_s, z_t = _pair(rng, batch=5, dim_s=3, dim_t=6)
  relational = jax.jit(distill.relational)
  np.testing.assert_allclose(relational(z_s, z_t), _np_rkd(z_s, z_t), rtol=1e-4)
  np.testing.assert_allclose(
    relational(z_s, z_t, distance_weight=1.0, angle_weight=0.0),
    _np_rkd(z_s, z_t, 1.0, 0.0),
    rtol=1e-4,
  )
  # Both potentials are invariant to translation and scale of either embedding.
  np.testing.assert_allclose(relational(3.0 * z_t[:, :3] + 1.0, z_t[:, :3]), 0.0, atol=1e-5)


def test_mmd_matches_numpy(rng):
  x = rng.normal(size=(6, 3)).astype(np.float32)
  y = (rng.normal(size=(4, 3)) + 0.5).astype(np.float32)
  np.testing.assert_allclose(distill.mmd(x, y), _np_mmd(x, y), rtol=1e-4)
  np.testing.assert_allclose(
    distill.mmd(x, y, num_kernels=3, multiplier=3.0, bandwidth=2.0),
    _np_mmd(x, y, num_kernels=3, multiplier=3.0, bandwidth=2.0),
    rtol=1e-4,
  )


def test_mmd_closed_forms(rng):
  x = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
  np.testing.assert_allclose(distill.mmd(x, x), 0.0, atol=1e-6)
  near, far = distill.mmd(x, x + 0.5), distill.mmd(x, x + 2.0, bandwidth=1.0)
  assert 0.0 < near < distill.mmd(x, x + 2.0, bandwidth=1.0)
  assert far > 0.0


def test_hallucination_loss(rng):
  pred, target = _pair(rng)
  np.testing.assert_allclose(
    distill.hallucination_loss(pred, target),
    np.mean((np.float64(pred) - np.float64(target)) ** 2),
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    distill.hallucination_loss(pred, target, kind="mmd"), _np_mmd(pred, target), rtol=1e-4
  )


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_jitted_gradients_finite_and_teacher_frozen(name, rng):
  """One compilation per loss serves every input pair: same shapes, no retracing."""
  loss = LOSSES[name]
  chex.clear_trace_counter()  # The counter is keyed by code, shared across parameters.

  @jax.jit
  @chex.assert_max_traces(n=1)
  def value_and_grads(s, t):
    return jax.value_and_grad(loss, argnums=(0, 1))(s, t)

  z_s, z_t = _pair(rng, batch=5)
  value, (grad_s, _) = value_and_grads(z_s, z_t)
  np.testing.assert_allclose(value, loss(z_s, z_t), rtol=1e-5, atol=1e-6)
  assert np.any(grad_s != 0.0)
  zeros = jnp.zeros_like(z_t)
  # Identical inputs, zero vectors, and a zero student against a real teacher.
  for s, t in ((z_s, z_t), (z_t, z_t), (zeros, zeros), (zeros, z_t)):
    value, (grad_s, grad_t) = value_and_grads(s, t)
    assert np.isfinite(value)
    assert np.all(np.isfinite(grad_s))
    np.testing.assert_array_equal(grad_t, 0.0)


def test_cosine_distance_can_train_both_sides(rng):
  z_s, z_t = _pair(rng)
  grad_t = jax.jit(jax.grad(distill.cosine_distance, argnums=1), static_argnums=2)(z_s, z_t, False)
  assert np.any(grad_t != 0.0)


@pytest.mark.parametrize(
  ("call", "message"),
  [
    (lambda: distill.cosine_distance(jnp.zeros((4, 3)), jnp.zeros((4, 2))), "`z_s`"),
    (lambda: distill.cosine_distance(jnp.zeros(4), jnp.zeros(4)), "`z_s` must have rank"),
    (lambda: distill.logit_kd(jnp.zeros((4, 3)), jnp.zeros((5, 3)), 2.0), "`logits_s`"),
    (lambda: distill.similarity_preserving(jnp.zeros((4, 3)), jnp.zeros((5, 3))), "batch"),
    (lambda: distill.relational(jnp.zeros((4, 3)), jnp.zeros((4, 3, 1))), "`z_t` must"),
    (lambda: distill.mmd(jnp.zeros((4, 3)), jnp.zeros((4, 2))), "`x` and `y`.*width"),
    (lambda: distill.hallucination_loss(jnp.zeros((4, 3)), jnp.zeros((4, 2))), "`pred`"),
    (lambda: distill.hallucination_loss(jnp.zeros((4, 3)), jnp.zeros((4, 3)), "l1"), "`kind`"),
  ],
)
def test_errors_name_the_argument(call, message):
  with pytest.raises(ValueError, match=message):
    call()
