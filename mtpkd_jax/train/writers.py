"""Metric writer: TensorBoard event files (tensorboardX, no TensorFlow) plus JSON lines."""

import json
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mtpkd_jax.train import distributed


def _import_summary_writer():
  """Imports tensorboardX's ``SummaryWriter`` without PyTorch.

  tensorboardX imports torch whenever it is installed, only to accept torch tensors; these
  writers pass floats. Left alone, every training process in an environment that has torch
  would load it (a second, and its CUDA libraries beside JAX's on a GPU). While tensorboardX
  loads, ``import torch`` fails as if torch were absent, unless it is imported already.
  """
  block = "torch" not in sys.modules
  if block:
    sys.modules["torch"] = None  # `import torch` raises ImportError.
  try:
    from tensorboardX import SummaryWriter  # noqa: PLC0415
  finally:
    if block:
      del sys.modules["torch"]
  return SummaryWriter


SummaryWriter = _import_summary_writer()


class MetricWriter:
  """Writes scalars to `<logdir>/events.out.tfevents.*` and `<logdir>/metrics.jsonl`.

  Each JSON line is `{"step": int, "<name>": float, ...}`. A resumed run appends, so a
  replayed step may appear twice; the later line is the one that matches the checkpoint.
  In a multi-process run only process 0 writes; the other processes' writers do nothing.

  Args:
    logdir: Directory for both files; created if missing.
  """

  def __init__(self, logdir: str | Path):
    self.logdir = Path(logdir)
    self._active = distributed.is_main()
    if not self._active:
      return
    self.logdir.mkdir(parents=True, exist_ok=True)
    self._summary = SummaryWriter(str(self.logdir))
    self._jsonl = open(self.logdir / "metrics.jsonl", "a")  # Closed by close().

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """Writes one value per name at `step`; values must convert to a Python float."""
    if not self._active:
      return
    values = {name: float(np.asarray(value)) for name, value in scalars.items()}
    for name, value in values.items():
      self._summary.add_scalar(name, value, global_step=step)
    self._jsonl.write(json.dumps({"step": int(step), **values}) + "\n")

  def flush(self) -> None:
    """Pushes buffered values to disk."""
    if not self._active:
      return
    self._summary.flush()
    self._jsonl.flush()

  def close(self) -> None:
    """Flushes and closes both files."""
    if not self._active:
      return
    self._summary.close()
    self._jsonl.close()
