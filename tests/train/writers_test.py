"""The metric writer writes TensorBoard events (readable by tensorboardX) and JSON lines."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from tensorboardX.proto import event_pb2

from mtpkd_jax.train.writers import MetricWriter

ROOT = Path(__file__).resolve().parents[2]


def _scalars(logdir):
  """``{(step, tag): value}`` of the one event file in ``logdir``, parsed as TFRecords:
  [len u64][crc u32][data][crc u32] records."""
  (path,) = logdir.glob("events.out.tfevents.*")
  raw, offset, scalars = path.read_bytes(), 0, {}
  while offset < len(raw):
    length = int(np.frombuffer(raw[offset : offset + 8], np.uint64)[0])
    event = event_pb2.Event.FromString(raw[offset + 12 : offset + 12 + length])
    scalars.update({(event.step, value.tag): value.simple_value for value in event.summary.value})
    offset += 12 + length + 4
  return scalars


def test_writes_events_and_json_lines(tmp_path):
  with MetricWriter(tmp_path / "logs") as writer:
    writer.write_scalars(1, {"train/loss": np.float32(0.5), "train/mae": 0.25})
    writer.write_scalars(2, {"val/ccc": 0.75})
  lines = (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line) for line in lines] == [
    {"step": 1, "train/loss": 0.5, "train/mae": 0.25},
    {"step": 2, "val/ccc": 0.75},
  ]
  scalars = _scalars(tmp_path / "logs")
  assert scalars == {(1, "train/loss"): 0.5, (1, "train/mae"): 0.25, (2, "val/ccc"): 0.75}


def test_the_training_stack_does_not_import_torch_where_it_is_installed(tmp_path):
  # tensorboardX imports torch whenever it can; the writers keep it out of training processes.
  assert importlib.util.find_spec("torch") is not None, "the test extras install torch"
  code = (
    "import sys; import experiments.train; from mtpkd_jax.train import writers; "
    f"w = writers.MetricWriter({str(tmp_path)!r}); w.write_scalars(1, {{'loss': 0.5}}); "
    "w.close(); print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
  )
  done = subprocess.run(
    [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
  )
  assert done.stdout.strip() == "[]"
  assert _scalars(tmp_path) == {(1, "loss"): 0.5}
