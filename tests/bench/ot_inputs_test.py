"""The benchmark's NumPy and torch anchored clouds are the loss's, written again."""

import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.bench import ot_inputs
from mtpkd_jax.ot import similarity


def _loss_anchored(student, teacher, k):
  t_pts, s_pts = similarity.select_anchors(
    similarity.shift_nonnegative(similarity.cosine_similarity(jnp.asarray(teacher))),
    similarity.shift_nonnegative(similarity.cosine_similarity(jnp.asarray(student))),
    "least",
    k,
  )
  return np.asarray(s_pts), np.asarray(t_pts)


def _sorted_rows(points):
  # Anchor columns come in a different order from argpartition and top_k: compare as sets.
  return np.sort(points, axis=1)


def test_numpy_and_torch_anchors_equal_the_loss_anchors():
  student, teachers = ot_inputs.make_embeddings(0, 24, 2, 16)
  assert student.shape == (24, 16) and teachers.shape == (2, 24, 16)
  want = _loss_anchored(student, teachers[1], 5)
  got = ot_inputs.np_anchored(student, teachers[1], 5)
  for g, w in zip(got, want, strict=True):
    np.testing.assert_allclose(_sorted_rows(g), _sorted_rows(w), rtol=1e-5, atol=1e-6)
  torch = pytest.importorskip("torch")
  got = ot_inputs.torch_anchored(torch, torch.tensor(student), torch.tensor(teachers[1]), 5)
  for g, w in zip(got, want, strict=True):
    np.testing.assert_allclose(_sorted_rows(g.numpy()), _sorted_rows(w), rtol=1e-5, atol=1e-6)


def test_costs_are_half_squared_distances():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
  want = [[0.5 * np.sum((u - v) ** 2) for v in y] for u in x]
  np.testing.assert_allclose(ot_inputs.half_sq(x, y), want)
  assert ot_inputs.random_costs(0, 2, 5).shape == (2, 5, 5)
  hard = ot_inputs.hard_costs(0, 2, 5)
  assert hard.shape == (2, 5, 5) and hard.min() > 1.0  # The clouds are 4 apart.
