"""Metrics against NumPy formulas written here and closed-form cases."""

import numpy as np
import pytest

from mtpkd_jax.train import metrics


def _reference_ccc(x, y):
  sxy = np.sum((x - x.mean()) * (y - y.mean())) / len(x)
  return 2 * sxy / (np.var(x) + np.var(y) + (x.mean() - y.mean()) ** 2)


def test_ccc_closed_forms_and_reference():
  x = np.random.default_rng(0).normal(size=200)
  assert metrics.ccc(x, x) == pytest.approx(1.0)
  # CCC(x, x + c) = 2 var / (2 var + c^2).
  c = 0.7
  assert metrics.ccc(x, x + c) == pytest.approx(2 * x.var() / (2 * x.var() + c**2))
  centred = x - x.mean()
  assert metrics.ccc(centred, -centred) == pytest.approx(-1.0)
  y = 0.5 * x + np.random.default_rng(1).normal(size=200)
  assert metrics.ccc(x, y) == pytest.approx(_reference_ccc(x, y))
  assert metrics.ccc(x, y) == pytest.approx(metrics.ccc(y, x))


def test_accuracy_from_ids_and_scores():
  labels = np.array([0, 1, 2, 2, 1])
  predictions = np.array([0, 2, 2, 2, 0])
  assert metrics.accuracy(labels, predictions) == pytest.approx(3 / 5)
  assert metrics.accuracy(labels, np.eye(3)[predictions] * 5.0) == pytest.approx(3 / 5)
  with pytest.raises(ValueError, match="differ"):
    metrics.accuracy(labels, predictions[:4])


def test_macro_f1_against_per_class_counts():
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 4, size=300)
  predictions = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 4, size=300))
  f1s = []
  for k in range(4):
    tp = np.sum((predictions == k) & (labels == k))
    precision = tp / np.sum(predictions == k)
    recall = tp / np.sum(labels == k)
    f1s.append(2 * precision * recall / (precision + recall))
  assert metrics.macro_f1(labels, predictions) == pytest.approx(np.mean(f1s))
  # Perfect on classes 0 and 1; class 2 of num_classes=3 never occurs and scores 0.
  assert metrics.macro_f1([0, 1, 1], [0, 1, 1]) == pytest.approx(1.0)
  assert metrics.macro_f1([0, 1, 1], [0, 1, 1], num_classes=3) == pytest.approx(2 / 3)


def test_mean_and_stderr():
  values = np.array([0.6, 0.7, 0.8, 0.65])
  mean, stderr = metrics.mean_and_stderr(values)
  assert mean == pytest.approx(values.mean())
  assert stderr == pytest.approx(np.sqrt(np.sum((values - values.mean()) ** 2) / 3 / 4))
  mean, stderr = metrics.mean_and_stderr([0.5])
  assert mean == 0.5 and np.isnan(stderr)
