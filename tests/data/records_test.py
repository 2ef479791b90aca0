"""Streaming dataset writes: records in order, several shards, nothing left on failure."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mtpkd_jax.data import records

FEATURES = tfds.features.FeaturesDict(
  {
    "x": tfds.features.Tensor(shape=(3,), dtype=np.float32, encoding=tfds.features.Encoding.BYTES),
    "index": tfds.features.Tensor(shape=(), dtype=np.int64),
  }
)


def _examples(num, fail_at=None):
  for i in range(num):
    if i == fail_at:
      raise ValueError(f"example {i} is corrupt")
    yield {"x": np.full(3, i, np.float32), "index": i}


def test_records_keep_their_order_across_shards(tmp_path):
  directory = tmp_path / "demo" / "cfg" / "1.0.0"
  records.write(directory, "demo", FEATURES, _examples(23), shard_examples=10)
  assert records.is_written(directory)
  assert len(list(directory.glob("demo-train.array_record-*-of-00003"))) == 3
  source = records.read_only(directory).as_data_source("train")
  assert len(source) == 23
  got = source.__getitems__(range(23))
  np.testing.assert_array_equal([r["index"] for r in got], np.arange(23))
  np.testing.assert_array_equal(got[17]["x"], np.full(3, 17.0))


def test_a_failed_write_leaves_no_dataset(tmp_path):
  directory = tmp_path / "demo" / "cfg" / "1.0.0"
  with pytest.raises(ValueError, match="example 5 is corrupt"):
    records.write(directory, "demo", FEATURES, _examples(9, fail_at=5), shard_examples=4)
  assert not records.is_written(directory)
  assert not list((tmp_path / "demo" / "cfg").iterdir())
