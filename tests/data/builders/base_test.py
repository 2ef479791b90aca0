"""The builders' shared machinery: config names from options, the missing-files error, records."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from ml_collections import config_dict
from tensorflow_datasets.proto import tf_example_generated_pb2 as example_pb2

from mtpkd_jax.data import pipeline
from mtpkd_jax.data.builders import base, biovid, files
from mtpkd_jax.data.builders.dummy import biovid as dummy
from tests.cpu_env import cpu_env

ROOT = Path(__file__).resolve().parents[3]
NAME = "biovid/part_a_binary"


def _folder(options) -> str:
  return pipeline.builder(NAME, "/unused", options).builder_config.name


def test_options_name_the_same_folder_however_they_are_typed():
  # `--options` JSON gives lists, a `--config.dataset_options` literal tuples, a hand-typed
  # JSON ints: one set of field values.
  literal = config_dict.ConfigDict({"options": {"signal_window": (1.0, 3.0)}})
  typings = [{"signal_window": [1.0, 3.0]}, literal.options.to_dict(), {"signal_window": [1, 3]}]
  assert len({_folder(options) for options in typings}) == 1
  config = pipeline.builder(NAME, "/unused", {"signal_window": [1, 3]}).builder_config
  assert config.signal_window == (1.0, 3.0) and all(type(t) is float for t in config.signal_window)
  assert _folder({"signal_window": [1, 4]}) != _folder({"signal_window": [1, 3]})
  # Options that change nothing are the registered config, built in its folder.
  default = biovid.Biovid.builder_configs["part_a_binary"]
  assert pipeline.builder(NAME, "/unused", {"image_size": 112}).builder_config is default
  assert _folder({"image_size": 64, "signal_window": [0, 5.5]}) == _folder({"image_size": 64})


@pytest.mark.slow
def test_the_missing_files_command_builds_where_training_reads(tmp_path):
  # A space in the data directory: the command must quote it for the shell.
  data_dir = tmp_path / "my data"
  options = {"image_size": 8, "signal_window": (1.0, 3.0)}
  with pytest.raises(files.MissingFilesError, match="Then build with: ") as error:
    pipeline.open_dataset(NAME, str(data_dir), options)
  command = shlex.split(str(error.value).split("Then build with: ")[1])
  assert command[:3] == ["python", "-m", "experiments.build_dataset"]
  dummy.write(tmp_path / "manual", subjects=1, samples_per_class=2)
  argv = [a.replace("=DIR", f"={tmp_path / 'manual'}") for a in command[3:]]
  done = subprocess.run(
    [sys.executable, "-m", "experiments.build_dataset", *argv],
    cwd=ROOT,
    env=cpu_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  # Training with the options typed as JSON lists finds that build rather than building anew.
  dataset = pipeline.open_dataset(NAME, str(data_dir), {"image_size": 8, "signal_window": [1, 3]})
  assert len(dataset) == 4 and dataset.build_report is None


def test_a_registered_config_is_built_without_options(tmp_path):
  builder = pipeline.builder(NAME, str(tmp_path))
  assert builder.build_command() == (
    f"python -m experiments.build_dataset --dataset={NAME} --data_dir={tmp_path} --manual_dir=DIR"
  )


def test_an_archive_of_a_missing_folder_is_named(tmp_path):
  dummy.write(tmp_path / "manual", subjects=1, samples_per_class=1)
  part = tmp_path / "manual" / "PartA"
  shutil.make_archive(str(part / "biosignals_filtered"), "zip", part / "biosignals_filtered")
  shutil.rmtree(part / "biosignals_filtered")
  builder = pipeline.builder(NAME, str(tmp_path / "tfds"), None, str(tmp_path / "manual"))
  expected = "`biosignals_filtered/` (<subject>/<sample>_bio.csv)"
  error = builder.missing(expected, part, names=["biosignals_filtered"])
  assert f"found the archive {part / 'biosignals_filtered.zip'}: unpack it first" in str(error)
  # Only an archive of a missing name is named.
  assert "unpack it first" not in str(builder.missing(expected, part, names=["video"]))


FEATURES = {
  "video": base.tensor((2, 3, 3), np.uint8),
  "y": base.tensor((), np.int64),
  "subject_name": tfds.features.Text(),
  "z": base.tensor((4,), np.float32),
  "index": base.tensor((), np.int64),
}


def test_a_record_and_its_index_appended_read_as_tfds_serialized_them():
  # A worker serializes all but the index, the build appends the index: TFDS's own parser
  # reads the example its own serializer writes, keys in any order.
  rng = np.random.default_rng(0)
  example = {
    "video": rng.integers(0, 255, (2, 3, 3), np.uint8),
    "y": np.int64(3),
    "subject_name": "s01",
    "z": rng.normal(size=4).astype(np.float32),
    "index": np.int64(7),
  }
  full = tfds.features.FeaturesDict(FEATURES)
  loaded = base.Serializer({k: v for k, v in FEATURES.items() if k != "index"})
  without_index = {k: v for k, v in example.items() if k != "index"}
  index = base.Serializer({"index": FEATURES["index"]})({"index": example["index"]})
  record = loaded(without_index) + index
  parse = example_pb2.Example.FromString
  assert parse(record) == parse(full.serialize_example(example))
  read = full.deserialize_example_np(record)
  for key, value in example.items():
    np.testing.assert_array_equal(read[key], value.encode() if key == "subject_name" else value)
  # The keys written sorted: the same bytes whatever their order (or a process's hash order,
  # which workers_test's builds on 1 and 2 workers check).
  backwards = {k: FEATURES[k] for k in reversed(FEATURES)}
  assert base.Serializer(backwards)(example) == base.Serializer(FEATURES)(example)
