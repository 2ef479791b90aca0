"""A build in worker processes writes the bytes and the report of a build in one process."""

import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest

from mtpkd_jax.data import pipeline, records
from mtpkd_jax.data.builders import report, workers
from mtpkd_jax.data.builders.dummy import affwild2, biovid, mosi, recola


def _corrupt(path):
  path.write_bytes(b"not what it should be")


# Dataset -> (dummy writer, its arguments, build options, a file to corrupt: a unit skipped).
CASES = {
  "biovid/part_a_binary": (
    biovid,
    {"subjects": 2, "samples_per_class": 2},
    {"image_size": 8},
    "PartA/video/*/*-PA4-001.mp4",
  ),
  # Every trial repairs a missing crop; a corrupt video skips its trial.
  "affwild2/va": (affwild2, {}, {"image_size": 8, "clip_length": 4}, "batch1/1-30-*.mp4"),
  "recola/arousal": (recola, {"recordings": 2}, {"window": 20}, "features_ECG/arousal/dev_1.arff"),
  "mosi/sentiment": (mosi, {"videos_per_fold": 1}, {"max_words": 4}, None),
}


def _build(manual_dir, data_dir, name, options, num_workers):
  """Every file of the built dataset and its report: ``{relative path: bytes}``."""
  builder = pipeline.builder(name, str(data_dir), options, str(manual_dir))
  built = builder.download_and_prepare(num_workers=num_workers)
  assert built.examples > 2
  _check_reads(builder, built.examples)
  written = {p.relative_to(data_dir): p.read_bytes() for p in data_dir.rglob("*") if p.is_file()}
  return written, built


def _check_reads(builder, count):
  """The records (serialized in the workers, the index appended) read as TFDS reads them."""
  tfds_source = builder.as_data_source("train")
  ours = records.Source.of(builder)
  assert sorted(int(r["index"]) for r in tfds_source) == list(range(count))
  if ours is None:  # Features records.Source does not read (MOSI's words).
    return
  for theirs, mine in zip(tfds_source, ours.__getitems__(range(count)), strict=True):
    assert theirs.keys() == set(mine)
    for key, value in theirs.items():
      np.testing.assert_array_equal(mine[key], value, err_msg=key)


@pytest.mark.parametrize("name", CASES)
def test_one_and_two_workers_write_the_same_bytes_and_report(tmp_path, name):
  dummy, files, options, corrupt = CASES[name]
  dummy.write(tmp_path / "manual", **files)
  if corrupt:
    _corrupt(next((tmp_path / "manual").glob(corrupt)))
  options = {**options, "max_bad_fraction": 0.5}
  one, one_report = _build(tmp_path / "manual", tmp_path / "one", name, options, 1)
  two, two_report = _build(tmp_path / "manual", tmp_path / "two", name, options, 2)
  assert one.keys() == two.keys()
  assert any(path.suffix == ".json" and "build_report" in path.name for path in one)
  for path in one:
    assert one[path] == two[path], path
  assert one_report == two_report
  assert bool(one_report.skipped) == bool(corrupt)


def test_an_error_in_a_worker_stops_the_build_with_it():
  # Unit 2 raises (a bug, not a bad file): units 0 and 1 come first, in order, then the error.
  units = [(f"u{i}", _Loader(i)) for i in range(4)]
  results = workers.unit_results(_Units(units), units, "test", num_workers=2)
  kinds = []
  with pytest.raises(ValueError, match="unit 2 is broken"):
    for kind, value in results:
      kinds.append((kind, value.get("n") if kind == "example" else value.skipped))
  assert kinds == [("example", 0), ("done", []), ("example", 1), ("done", [])]


def test_a_worker_killed_while_handing_over_an_example_stops_the_build():
  # Unit 1's worker is killed (as by the out-of-memory killer) in the middle of sending an
  # example larger than a pipe holds, while the build is still busy with unit 0.
  units = [(f"u{i}", _Killed(i)) for i in range(2)]
  outcome = []

  def consume():
    try:
      for kind, _ in workers.unit_results(_Units(units), units, "test", num_workers=2):
        if kind == "done":
          time.sleep(1.0)
    except RuntimeError as error:
      outcome.append(str(error))

  thread = threading.Thread(target=consume, daemon=True)
  thread.start()
  thread.join(timeout=60)
  assert not thread.is_alive(), "the build waits forever on a dead worker"
  assert outcome and "worker loading 'u1' died (exit code -9" in outcome[0]


def test_a_slow_unit_holds_back_only_its_worker(tmp_path):
  # Unit 0 ends only once unit 2 has been loaded: by the other worker, which takes the
  # next units while the first is busy (dealt round robin, unit 2 would wait for unit 0).
  # Each example is encoded in the worker that loads it.
  units = [(f"u{i}", _Waits(i, tmp_path / "unit_2_loaded")) for i in range(6)]
  results = workers.unit_results(_Units(units), units, "test", num_workers=2, encode=_encode)
  encoded = [value for kind, value in results if kind == "example"]
  assert [number for _, number in encoded] == list(range(6))
  assert os.getpid() not in {pid for pid, _ in encoded}


def _encode(example):
  return os.getpid(), example["n"]


class _Waits:
  """A unit's loader (picklable): unit 0 waits for unit 2's to have run."""

  def __init__(self, number, signal_path):
    self.number, self.signal_path = number, signal_path

  def __call__(self, build_report):
    del build_report
    if self.number == 2:
      self.signal_path.touch()
    deadline = time.monotonic() + 30
    while self.number == 0 and not self.signal_path.exists():
      if time.monotonic() > deadline:
        raise TimeoutError("unit 2 was not loaded while unit 0 was")
      time.sleep(0.01)
    return [{"n": self.number}]


class _Killed:
  """A unit's loader (picklable): a 4 MB example; unit 1's process is killed while sending it."""

  def __init__(self, number):
    self.number = number

  def __call__(self, build_report):
    del build_report
    if self.number == 1:
      threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGKILL)).start()
    return [{"n": np.zeros(4_000_000, np.uint8)}]


class _Loader:
  """A unit's loader (picklable): one example, or an error for unit 2."""

  def __init__(self, number):
    self.number = number

  def __call__(self, build_report):
    del build_report
    if self.number == 2:
      raise ValueError("unit 2 is broken")
    return [{"n": self.number}]


class _Units:
  """``make_units`` for the workers: the units given."""

  def __init__(self, units):
    self.units = units

  def __call__(self):
    return self.units


def test_bad_files_pickle_with_their_path_and_reason():
  error = pickle.loads(pickle.dumps(report.BadFile("a/b.mp4", "truncated")))
  assert (error.path, error.reason, str(error)) == ("a/b.mp4", "truncated", "a/b.mp4: truncated")


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_bad_worker_counts_are_named(value):
  with pytest.raises(ValueError, match="`num_workers` must be a positive integer"):
    workers.check_count(value)
