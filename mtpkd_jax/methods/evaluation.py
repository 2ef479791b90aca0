"""Batched prediction and the task's metrics on a split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data import table as table_lib
from mtpkd_jax.train import distributed, parallel
from mtpkd_jax.train import metrics as metrics_lib

# The metric sets a config can choose (``config.metrics``).
METRIC_SETS = ("default", "sentiment")
_SENTIMENT = ("acc_2", "f1_2", "mae", "corr", "acc_7")

# How test outputs are scored (``config.scoring``), as the results say it.
SCORINGS = {
  "clip": "clip: over the test examples",
  "frame": (
    "frame: CCC over every annotated test frame, each once (a clip's prediction given to its "
    "frames, overlapping clips averaged)"
  ),
}
# The stored per-frame features that ``frame`` scoring reads (see :func:`frame_scores`).
FRAME_KEYS = ("frame_targets", "frame_mask", "frame_numbers")


def _check(task: schema_lib.Task, metrics: str) -> None:
  if metrics not in METRIC_SETS:
    raise ValueError(f"`config.metrics` must be one of {METRIC_SETS}, got {metrics!r}.")
  if metrics == "sentiment" and (task.kind != "regression" or task.num_outputs != 1):
    raise ValueError(
      "`config.metrics='sentiment'` scores one regressed sentiment score, but the task is "
      f"{task.kind} of {list(task.names)}."
    )


def metric_names(task: schema_lib.Task, metrics: str = "default") -> tuple[str, ...]:
  """The reported metrics.

  ``default``: accuracy and macro-F1, or the CCC of each target and their mean.
  ``sentiment`` (one score in ``[-3, 3]``): CMU-MOSI's Acc-2, F1, MAE, Pearson correlation
  and Acc-7 (:func:`mtpkd_jax.train.metrics.sentiment`).
  """
  _check(task, metrics)
  if metrics == "sentiment":
    return _SENTIMENT
  if task.kind == "classification":
    return ("accuracy", "macro_f1")
  return (*(f"ccc_{name}" for name in task.names), "ccc_mean")


def score_metric(task: schema_lib.Task, metrics: str = "default") -> str:
  """The reported metric that ``scores`` also returns as ``score`` (model selection)."""
  _check(task, metrics)
  if metrics == "sentiment":
    return "corr"
  return "accuracy" if task.kind == "classification" else "ccc_mean"


def predict(
  fn: Callable[..., jax.Array],
  variables,
  table: table_lib.Table,
  batch_size: int,
  indices: np.ndarray | None = None,
) -> Any:
  """``fn(variables, batch)`` over the examples ``indices`` of ``table``, as one array.

  Data-parallel over every device of every process (``parallel.make_mesh()``): each batch
  of ``batch_size`` examples (rounded up to a multiple of the devices) is split over the
  devices, each process reading only its rows; the last batch is padded with copies of its
  last example, so a single shape compiles, and the padding is cut from the outputs. Every
  process gets all outputs, each example exactly once, in ``indices`` order.

  Args:
    fn: ``fn(variables, batch) -> [batch_size, ...]`` (or a pytree of such arrays),
      ``batch`` a dict of ``table``'s columns; jit-compiled once by the caller.
    variables: passed through to ``fn``, replicated on the mesh.
    table: the examples.
    batch_size: examples per call.
    indices: the examples to predict; ``None`` for all of ``table``, in order.

  Returns:
    ``[len(indices), ...]``, or the same pytree of such arrays.
  """
  indices = np.arange(len(table)) if indices is None else np.asarray(indices)
  mesh = parallel.make_mesh()
  variables = parallel.replicate_on_mesh(variables, mesh)
  size = -(-batch_size // mesh.size) * mesh.size
  rows = distributed.process_rows(size)
  outputs = []
  for start in range(0, len(indices), size):
    chunk = indices[start : start + size]
    padded = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk))])
    batch = parallel.shard_batch(table.take(padded[rows]), mesh)
    gathered = multihost_utils.process_allgather(fn(variables, batch), tiled=True)
    num = len(chunk)
    outputs.append(jax.tree.map(lambda a, n=num: np.asarray(a)[:n], gathered))
  return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)


def scores(
  outputs: np.ndarray, targets: np.ndarray, task: schema_lib.Task, metrics: str = "default"
) -> dict:
  """The task's metrics (see :func:`metric_names`), plus ``score`` used for model selection.

  Args:
    outputs: Array of shape ``[N, C]``: logits, or the regression predictions.
    targets: ``[N]`` class indices, or ``[N, K]`` targets.
    task: the dataset's task.
    metrics: the metric set, one of :data:`METRIC_SETS`.

  Returns:
    ``{metric: float}``; ``score`` is :func:`score_metric`'s value.
  """
  _check(task, metrics)
  if metrics == "sentiment":
    values = metrics_lib.sentiment(outputs, targets)
    return {**values, "score": values[score_metric(task, metrics)]}
  if task.kind == "classification":
    labels = np.asarray(targets)
    accuracy = metrics_lib.accuracy(labels, outputs)
    return {
      "accuracy": accuracy,
      "macro_f1": metrics_lib.macro_f1(labels, outputs, num_classes=outputs.shape[-1]),
      "score": accuracy,
    }
  targets = np.asarray(targets).reshape(len(outputs), -1)
  values = {
    f"ccc_{name}": metrics_lib.ccc(outputs[:, i], targets[:, i])
    for i, name in enumerate(task.names)
  }
  values["ccc_mean"] = float(np.mean(list(values.values())))
  values["score"] = values["ccc_mean"]
  return values


def frame_scores(
  outputs: np.ndarray, frames: dict[str, np.ndarray], sequences: np.ndarray, task: schema_lib.Task
) -> dict:
  """The CCC metrics of :func:`scores` over frames: Aff-Wild2's convention.

  Each example is a clip of frames of one sequence (an annotated trial). Its prediction is
  given to each of its annotated frames; a frame that several overlapping clips cover gets
  the mean of their predictions, so every annotated frame counts once; frames whose mask is
  False (``-5`` in Aff-Wild2) are never scored. CCC per target is then taken over all the
  frames pooled.

  Args:
    outputs: Array of shape ``[N, K]``: the regression predictions of ``N`` clips.
    frames: ``frame_targets`` ``[N, L, K]`` (or ``[N, L]`` for one target), ``frame_mask``
      ``[N, L]`` bool and ``frame_numbers`` ``[N, L]`` int, per clip of ``L`` frames.
    sequences: ``[N]`` int, each clip's sequence: frames of one sequence and number are one.
    task: the dataset's task (regression).

  Returns:
    As :func:`scores`, over frames.
  """
  mask = np.asarray(frames["frame_mask"], bool)
  num, length = mask.shape
  keep = mask.ravel()
  numbers = np.asarray(frames["frame_numbers"], np.int64)
  keys = np.asarray(sequences, np.int64)[:, None] * (int(numbers.max()) + 1) + numbers
  _, frame = np.unique(keys.ravel()[keep], return_inverse=True)
  counts = np.bincount(frame)[:, None]

  def per_frame(values):  # [N * L, K] -> [frames, K], the mean over each frame's clips.
    values = np.asarray(values, np.float64)[keep]
    sums = np.stack([np.bincount(frame, v, len(counts)) for v in values.T], axis=1)
    return sums / counts

  predictions = per_frame(np.repeat(outputs, length, axis=0))
  targets = per_frame(np.asarray(frames["frame_targets"]).reshape(num * length, -1))
  return scores(predictions, targets, task)
