"""Evaluation metrics over a whole split, on the host (NumPy), and aggregation over runs."""

import numpy as np
from numpy.typing import ArrayLike


def _class_ids(labels: ArrayLike, predictions: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
  """Returns `(labels, predicted ids)`; scores `[n, classes]` are turned into ids by argmax."""
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  if predictions.ndim == labels.ndim + 1:
    predictions = predictions.argmax(axis=-1)
  if predictions.shape != labels.shape:
    raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ.")
  return labels.ravel(), predictions.ravel()


def accuracy(labels: ArrayLike, predictions: ArrayLike) -> float:
  """Fraction of correct predictions.

  Args:
    labels: Integer class ids, shape `[n]`.
    predictions: Predicted class ids `[n]`, or scores/logits `[n, num_classes]`.

  Returns:
    Accuracy in `[0, 1]`.
  """
  labels, predictions = _class_ids(labels, predictions)
  return float(np.mean(labels == predictions))


def macro_f1(labels: ArrayLike, predictions: ArrayLike, num_classes: int | None = None) -> float:
  """Unweighted mean over classes of the per-class F1 score.

  A class with neither true nor predicted samples has F1 0 when `num_classes` includes it.

  Args:
    labels: Integer class ids, shape `[n]`.
    predictions: Predicted class ids `[n]`, or scores/logits `[n, num_classes]`.
    num_classes: Average over classes `0..num_classes-1`; by default over the classes that
      occur in `labels` or in the predictions.

  Returns:
    Macro-F1 in `[0, 1]`.
  """
  labels, predictions = _class_ids(labels, predictions)
  if num_classes is None:
    classes = np.union1d(labels, predictions)
  else:
    classes = np.arange(num_classes)
  hits = labels[:, None] == classes
  predicted = predictions[:, None] == classes
  true_pos = np.sum(hits & predicted, axis=0)
  # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (|true| + |predicted|).
  denominator = hits.sum(axis=0) + predicted.sum(axis=0)
  f1 = np.divide(2 * true_pos, denominator, out=np.zeros(len(classes)), where=denominator > 0)
  return float(np.mean(f1))


def ccc(x: ArrayLike, y: ArrayLike) -> float:
  """Concordance correlation coefficient `2 cov / (var_x + var_y + (mean_x - mean_y)^2)`.

  Moments are population moments (divided by `n`).

  Args:
    x: Predictions, shape `[n]`.
    y: Targets, shape `[n]`.

  Returns:
    CCC in `[-1, 1]`; 1 only for `x == y`.
  """
  x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
  if x.shape != y.shape:
    raise ValueError(f"x {x.shape} and y {y.shape} differ.")
  mean_x, mean_y = x.mean(), y.mean()
  covariance = np.mean((x - mean_x) * (y - mean_y))
  return float(2 * covariance / (x.var() + y.var() + (mean_x - mean_y) ** 2))


def pearson(x: ArrayLike, y: ArrayLike) -> float:
  """Pearson correlation of predictions `x [n]` and targets `y [n]`; 0 if either is constant."""
  x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
  if x.shape != y.shape:
    raise ValueError(f"x {x.shape} and y {y.shape} differ.")
  x, y = x - x.mean(), y - y.mean()
  denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
  return float(np.sum(x * y) / denominator) if denominator > 0 else 0.0


def weighted_f1(labels: ArrayLike, predictions: ArrayLike) -> float:
  """Per-class F1 averaged with the classes' shares of `labels` as weights.

  Args:
    labels: Integer class ids, shape `[n]`.
    predictions: Predicted class ids `[n]`, or scores/logits `[n, num_classes]`.
  """
  labels, predictions = _class_ids(labels, predictions)
  classes, support = np.unique(labels, return_counts=True)
  hits, predicted = labels[:, None] == classes, predictions[:, None] == classes
  f1 = 2 * np.sum(hits & predicted, axis=0) / (support + predicted.sum(axis=0))
  return float(np.sum(f1 * support) / len(labels))


def sentiment(predictions: ArrayLike, scores: ArrayLike) -> dict[str, float]:
  """CMU-MOSI's metrics of predicted sentiment scores against the annotated ones.

  The scores are in `[-3, 3]`. `mae`, `corr` (Pearson); `acc_2` and `f1_2` (weighted F1) of
  negative (`< 0`) vs non-negative; `acc_7` of the scores rounded to the 7 integers
  `-3..3` after clipping to `[-3, 3]`.

  Args:
    predictions: Predicted scores, shape `[n]` (or `[n, 1]`).
    scores: Annotated scores, the same shape.
  """
  x, y = np.asarray(predictions, np.float64).ravel(), np.asarray(scores, np.float64).ravel()
  if x.shape != y.shape:
    raise ValueError(f"predictions {x.shape} and scores {y.shape} differ.")
  positive_x, positive_y = (x >= 0).astype(int), (y >= 0).astype(int)
  return {
    "mae": float(np.mean(np.abs(x - y))),
    "corr": pearson(x, y),
    "acc_2": accuracy(positive_y, positive_x),
    "f1_2": weighted_f1(positive_y, positive_x),
    "acc_7": accuracy(np.round(np.clip(y, -3, 3)), np.round(np.clip(x, -3, 3))),
  }


def mean_and_stderr(values: ArrayLike) -> tuple[float, float]:
  """Mean and standard error of the mean over runs (folds x seeds).

  Args:
    values: One score per run, shape `[runs]`.

  Returns:
    `(mean, std(ddof=1) / sqrt(runs))`; the standard error is NaN for a single run, which
    has none.
  """
  values = np.asarray(values, np.float64).ravel()
  if values.size == 0:
    raise ValueError("mean_and_stderr needs at least one value.")
  if values.size == 1:
    return float(values[0]), float("nan")
  return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))
