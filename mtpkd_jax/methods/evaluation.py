"""Batched prediction and the task's metrics on a split."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

from mtpkd_jax.losses import task as task_lib
from mtpkd_jax.train import metrics as metrics_lib

METRICS = {
  "classification": ("accuracy", "macro_f1"),
  "regression": ("ccc_valence", "ccc_arousal", "ccc_mean"),
}


def task_of(dataset_task: str) -> str:
  """``classification | regression`` for a dataset's task (``pain`` or ``va``)."""
  return "regression" if dataset_task == "va" else "classification"


def predict(
  fn: Callable[..., jax.Array],
  variables,
  inputs: Sequence[np.ndarray],
  batch_size: int,
) -> np.ndarray:
  """``fn(variables, *batch)`` over ``inputs`` in batches, as one ``[N, ...]`` array.

  ``fn`` should be jit-compiled once by the caller; the last batch is padded to
  ``batch_size`` so it compiles a single shape.
  """
  num = len(inputs[0])
  outputs = []
  for start in range(0, num, batch_size):
    chunk = [x[start : start + batch_size] for x in inputs]
    pad = batch_size - len(chunk[0])
    if pad:
      chunk = [np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) for x in chunk]
    outputs.append(np.asarray(fn(variables, *chunk))[: batch_size - pad])
  return np.concatenate(outputs)


def scores(outputs: np.ndarray, targets: Mapping[str, np.ndarray], task: str) -> dict:
  """The task's metrics, plus ``score`` (accuracy, or mean CCC) used for model selection.

  Args:
    outputs: Array of shape ``[N, C]``: logits, or (valence, arousal) predictions.
    targets: ``label`` (classification) or ``valence`` and ``arousal`` (regression),
      each of shape ``[N]``.
    task: ``classification | regression``.
  """
  if task == "classification":
    labels = np.asarray(targets["label"])
    accuracy = metrics_lib.accuracy(labels, outputs)
    return {
      "accuracy": accuracy,
      "macro_f1": metrics_lib.macro_f1(labels, outputs, num_classes=outputs.shape[-1]),
      "score": accuracy,
    }
  values = {
    f"ccc_{name}": metrics_lib.ccc(outputs[:, i], targets[name])
    for i, name in enumerate(task_lib.REGRESSION_TARGETS)
  }
  values["ccc_mean"] = float(np.mean(list(values.values())))
  values["score"] = values["ccc_mean"]
  return values
