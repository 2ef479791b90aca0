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


def test_pearson_against_the_textbook_formula():
  rng = np.random.default_rng(4)
  x = rng.normal(size=100)
  y = 0.3 * x + rng.normal(size=100)
  n = len(x)
  reference = (n * np.sum(x * y) - x.sum() * y.sum()) / np.sqrt(
    (n * np.sum(x**2) - x.sum() ** 2) * (n * np.sum(y**2) - y.sum() ** 2)
  )
  assert metrics.pearson(x, y) == pytest.approx(reference)
  assert metrics.pearson(x, 2 * x + 1) == pytest.approx(1.0)
  assert metrics.pearson(x, np.ones(100)) == 0.0


def test_weighted_f1_against_per_class_counts():
  # Class 0: 3 true, predicted [0, 0, 1] -> TP 2, FP 1 (the last), FN 1: F1 = 4 / 6.
  # Class 1: 2 true, predicted [1, 0] -> TP 1, FP 1, FN 1: F1 = 2 / 4. Weights 3/5 and 2/5.
  labels = np.array([0, 0, 0, 1, 1])
  predictions = np.array([0, 0, 1, 1, 0])
  expected = 3 / 5 * (4 / 6) + 2 / 5 * (2 / 4)
  assert metrics.weighted_f1(labels, predictions) == pytest.approx(expected)
  assert metrics.weighted_f1([1, 1, 0, 0], [1, 1, 0, 0]) == pytest.approx(1.0)


def test_sentiment_metrics_on_a_hand_computed_example():
  scores = np.array([-2.6, -0.4, 0.0, 1.2, 3.0, -1.5])
  predictions = np.array([-3.4, 0.3, -0.2, 1.6, 2.4, -1.5])
  values = metrics.sentiment(predictions, scores)
  assert values["mae"] == pytest.approx(np.mean([0.8, 0.7, 0.2, 0.4, 0.6, 0.0]))
  assert values["corr"] == pytest.approx(np.corrcoef(predictions, scores)[0, 1])
  # Negative vs non-negative: truth [-, -, +, +, +, -], predicted [-, +, -, +, +, -].
  assert values["acc_2"] == pytest.approx(4 / 6)
  # Both classes have 3 examples, 2 hits and 1 miss each way: F1 = 2/3 for both.
  assert values["f1_2"] == pytest.approx(2 / 3)
  # Rounded after clipping: truth [-3, 0, 0, 1, 3, -2] (-1.5 rounds to even), predicted
  # [-3, 0, 0, 2, 2, -2].
  assert values["acc_7"] == pytest.approx(4 / 6)
  with pytest.raises(ValueError, match="differ"):
    metrics.sentiment(predictions[:3], scores)


def test_mean_and_stderr():
  values = np.array([0.6, 0.7, 0.8, 0.65])
  mean, stderr = metrics.mean_and_stderr(values)
  assert mean == pytest.approx(values.mean())
  assert stderr == pytest.approx(np.sqrt(np.sum((values - values.mean()) ** 2) / 3 / 4))
  mean, stderr = metrics.mean_and_stderr([0.5])
  assert mean == 0.5 and np.isnan(stderr)
