"""Tests of mtpkd_jax.ot.similarity against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.ot import similarity


def _np_cosine(z):
  unit = z / np.linalg.norm(z, axis=-1, keepdims=True)
  return unit @ unit.T


def test_cosine_similarity_matches_numpy_and_batches():
  z = np.random.default_rng(0).normal(size=(3, 6, 5))
  got = np.asarray(similarity.cosine_similarity(jnp.asarray(z)))
  for t in range(3):
    np.testing.assert_allclose(got[t], _np_cosine(z[t]), rtol=1e-5, atol=1e-6)


def test_cosine_similarity_zero_vectors_are_finite_with_finite_gradient():
  z = jnp.zeros((4, 3)).at[0].set(jnp.array([1.0, 2.0, 3.0]))
  s = similarity.cosine_similarity(z)
  assert np.all(np.isfinite(s))
  np.testing.assert_allclose(s[1:, 1:], 0.0)
  grad = jax.grad(lambda z: jnp.sum(similarity.cosine_similarity(z) ** 2))(z)
  assert np.all(np.isfinite(grad))


def test_shift_nonnegative_subtracts_each_matrix_minimum():
  s = np.random.default_rng(1).normal(size=(2, 4, 4))
  got = np.asarray(similarity.shift_nonnegative(jnp.asarray(s)))
  for t in range(2):
    np.testing.assert_allclose(got[t], s[t] - s[t].min(), rtol=1e-6)
    assert got[t].min() == 0.0


@pytest.mark.parametrize("mode", ["least", "most"])
def test_anchors_are_chosen_on_teacher_and_applied_to_student(mode):
  rng = np.random.default_rng(2)
  s_t, s_s = rng.normal(size=(7, 7)), rng.normal(size=(7, 7))
  t_pts, s_pts = similarity.select_anchors(jnp.asarray(s_t), jnp.asarray(s_s), mode, 3)
  order = np.argsort(s_t, axis=1) if mode == "least" else np.argsort(-s_t, axis=1)
  idx = order[:, :3]
  np.testing.assert_allclose(t_pts, np.take_along_axis(s_t, idx, 1), rtol=1e-6)
  np.testing.assert_allclose(s_pts, np.take_along_axis(s_s, idx, 1), rtol=1e-6)


def test_anchor_all_keeps_every_column_and_broadcasts_student():
  s_t = jnp.ones((2, 5, 5))
  s_s = jnp.eye(5)
  t_pts, s_pts = similarity.select_anchors(s_t, s_s, "all", 0)
  assert t_pts.shape == s_pts.shape == (2, 5, 5)


def test_anchors_are_differentiable_wrt_student_only():
  rng = np.random.default_rng(3)
  s_t, s_s = jnp.asarray(rng.normal(size=(5, 5))), jnp.asarray(rng.normal(size=(5, 5)))

  def f(s_t, s_s):
    t_pts, s_pts = similarity.select_anchors(s_t, s_s, "least", 2)
    return jnp.sum(s_pts**2) + jnp.sum(jnp.sin(t_pts))

  g_t, g_s = jax.jit(jax.grad(f, argnums=(0, 1)))(s_t, s_s)
  # Exactly the 2 selected columns of each row carry gradient to the student.
  assert int(jnp.sum(g_s != 0)) == 10
  # The teacher gets gradient through its values, never through the selection.
  assert int(jnp.sum(g_t != 0)) == 10


def test_unknown_anchor_mode_raises():
  with pytest.raises(ValueError, match="anchors"):
    similarity.select_anchors(jnp.eye(3), jnp.eye(3), "top", 1)


def test_centroid_distance_matches_numpy_and_has_zero_gradient_at_equality():
  rng = np.random.default_rng(4)
  s_t, s_s = rng.normal(size=(2, 5, 5)), rng.normal(size=(5, 5))
  got = similarity.centroid_distance(jnp.asarray(s_t), jnp.asarray(s_s))
  want = [np.linalg.norm(s_t[t].mean(0) - s_s.mean(0)) for t in range(2)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  grad = jax.grad(lambda s: similarity.centroid_distance(s, s))(jnp.asarray(s_s))
  np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("mode,k", [("least", 5), ("most", 7), ("all", 0)])
def test_anchored_clouds_never_exceed_the_diameter_bound_and_can_reach_it(mode, k):
  # Rows of +-e on one axis (and noise): similarities close to +-1, shifted entries close to
  # 0 or 2, so a student whose rows are the teacher's with signs flipped at random fills
  # every anchor's range [0, 2]: a joint box of diagonal 2 sqrt(columns), the bound without
  # its margin. Random float32 embeddings stay below it.
  rng = np.random.default_rng(3)
  signs = np.where(rng.random(24) < 0.5, -1.0, 1.0)
  teacher = np.outer(signs, np.eye(4)[0]) + 1e-3 * rng.normal(size=(24, 4))
  student = teacher * np.where(rng.random(24) < 0.5, -1.0, 1.0)[:, None]
  for s, t, tight in (
    (student, teacher, True),
    *[(z[0], z[1], False) for z in rng.normal(size=(5, 2, 24, 3))],
  ):
    cos = [similarity.cosine_similarity(jnp.asarray(z, jnp.float32)) for z in (t, s)]
    t_pts, s_pts = similarity.select_anchors(*map(similarity.shift_nonnegative, cos), mode, k)
    points = np.concatenate([np.asarray(t_pts), np.asarray(s_pts)])
    columns = points.shape[1]
    assert columns == (24 if mode == "all" else k)
    bound = similarity.anchored_diameter_bound(columns)
    np.testing.assert_allclose(bound, 2 * np.sqrt(columns) * 1.01)
    diameter = np.linalg.norm(points.max(0) - points.min(0))
    assert diameter <= bound
    if tight:
      np.testing.assert_allclose(diameter, 2 * np.sqrt(columns), rtol=1e-5)
