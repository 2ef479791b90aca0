"""Inputs of the OT benchmark: clustered embeddings, anchored clouds and cost tensors."""

from __future__ import annotations

import numpy as np


def make_embeddings(seed: int, batch: int, num_teachers: int, dim: int):
  """Clustered embeddings: ``student [B, d]``, ``teachers [T, B, d]`` (float32 NumPy).

  Samples share one of 8 cluster labels; each model has its own cluster centres and adds its
  own noise, so that similarity matrices have the block structure of trained embeddings
  rather than the near-constant off-diagonal of isotropic noise.
  """
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 8, size=batch)
  centres = rng.normal(size=(num_teachers + 1, 8, dim))
  noise = rng.normal(size=(num_teachers + 1, batch, dim))
  views = centres[:, labels] + 0.7 * noise
  return views[0].astype(np.float32), views[1:].astype(np.float32)


def np_anchored(student: np.ndarray, teacher: np.ndarray, k: int):
  """NumPy anchored clouds ``(student_points, teacher_points)``, each ``[B, k]``.

  The loss's construction written again: cosine matrices shifted to non-negative, the ``k``
  columns least similar on the teacher's matrix.
  """

  def cos(z):
    unit = z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-8)
    return unit @ unit.T

  s_s, s_t = cos(student), cos(teacher)
  idx = np.argpartition(s_t, k - 1, axis=1)[:, :k]
  return (
    np.take_along_axis(s_s - s_s.min(), idx, 1),
    np.take_along_axis(s_t - s_t.min(), idx, 1),
  )


def torch_anchored(torch, student, teacher, k: int):
  """Torch anchored clouds ``(student_points, teacher_points)``, each ``[B, k]``."""

  def cos(z):
    unit = z / torch.clamp(torch.linalg.norm(z, dim=-1, keepdim=True), min=1e-8)
    return unit @ unit.T

  s_s, s_t = cos(student), cos(teacher)
  idx = torch.topk(-s_t, k, dim=-1).indices
  return torch.gather(s_s - s_s.min(), 1, idx), torch.gather(s_t - s_t.min(), 1, idx)


def half_sq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """NumPy cost ``½‖x_i - y_j‖²``: ``[..., n, d], [..., m, d] -> [..., n, m]``."""
  return 0.5 * ((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1)


def random_costs(seed: int, problems: int, n: int, dim: int = 8) -> np.ndarray:
  """``[P, n, n]`` costs between two random clouds (the second shifted by 0.5)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(problems, n, dim))
  y = rng.normal(size=(problems, n, dim)) + 0.5
  return half_sq(x, y)


def hard_costs(seed: int, problems: int, n: int, dim: int = 2) -> np.ndarray:
  """``[P, n, n]`` costs between two well-separated Gaussian clouds (spread 0.3, 4 apart)."""
  rng = np.random.default_rng(seed)
  x = 0.3 * rng.normal(size=(problems, n, dim))
  y = 0.3 * rng.normal(size=(problems, n, dim)) + 4.0 / np.sqrt(dim)
  return half_sq(x, y)


def geomloss_steps(student: np.ndarray, teachers: np.ndarray, blur: float, scaling: float, k: int):
  """Length of GeomLoss's epsilon list for each teacher's anchored clouds (its own diameter)."""
  steps = []
  for teacher in teachers:
    x, y = np_anchored(student.astype(np.float64), teacher.astype(np.float64), k)
    points = np.concatenate([x, y])
    diameter = np.linalg.norm(points.max(0) - points.min(0))
    middle = np.arange(2 * np.log(diameter), 2 * np.log(blur), 2 * np.log(scaling))
    steps.append(len(middle) + 2)
  return steps
