"""Streaming dataset writes: records in order, several shards, nothing left on failure; the lean
reader decodes records as TFDS's data source does."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mtpkd_jax.data import pipeline, records

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


MIXED = tfds.features.FeaturesDict(
  {
    "clip": tfds.features.Tensor(
      shape=(2, 3, 3), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
    ),
    "signal": tfds.features.Tensor(
      shape=(4, 2), dtype=np.float32, encoding=tfds.features.Encoding.BYTES
    ),
    "values": tfds.features.Tensor(shape=(3,), dtype=np.float32),
    "mask": tfds.features.Tensor(shape=(3,), dtype=np.bool_),
    "score": tfds.features.Tensor(shape=(), dtype=np.float32),
    "index": tfds.features.Tensor(shape=(), dtype=np.int64),
    "name": tfds.features.Text(),
  }
)


def _mixed(num):
  rng = np.random.default_rng(0)
  for i in range(num):
    yield {
      "clip": rng.integers(0, 256, (2, 3, 3)).astype(np.uint8),
      "signal": rng.normal(size=(4, 2)).astype(np.float32),
      "values": rng.normal(size=3).astype(np.float32),
      "mask": rng.random(3) < 0.5,
      "score": np.float32(rng.normal()),
      "index": i,
      "name": f"example {i}",
    }


def _assert_same_records(got, expected):
  """Records decoded alike: the same keys, types, dtypes, shapes and values."""
  assert len(got) == len(expected)
  for a, b in zip(got, expected, strict=True):
    assert sorted(a) == sorted(b)
    for key in b:
      assert type(a[key]) is type(b[key]), key
      if isinstance(b[key], np.ndarray):
        assert (a[key].dtype, a[key].shape) == (b[key].dtype, b[key].shape), key
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_the_lean_source_decodes_as_tfds_does(tmp_path):
  directory = tmp_path / "demo" / "cfg" / "1.0.0"
  records.write(directory, "demo", MIXED, _mixed(23), shard_examples=10)
  written = records.read_only(directory)
  source = records.Source.of(written)
  assert source is not None and len(source) == 23
  # Out of order, across the three shards, one asked for twice.
  positions = [22, 0, 9, 10, 15, 3, 20, 10]
  tfds_source = written.as_data_source("train")
  _assert_same_records(source.__getitems__(positions), tfds_source.__getitems__(positions))
  with pytest.raises(IndexError, match=r"in \[0, 23\)"):
    source.__getitems__([23])


def test_the_lean_source_reads_a_tfds_built_dataset(tiny_dir):
  written = pipeline.builder("synthetic_affect/tiny", tiny_dir)
  source, tfds_source = records.Source.of(written), written.as_data_source("train")
  positions = list(range(len(tfds_source)))[::-1]
  _assert_same_records(source.__getitems__(positions), tfds_source.__getitems__(positions))


def test_features_it_does_not_decode_are_left_to_tfds(tmp_path):
  features = tfds.features.FeaturesDict(
    {"ragged": tfds.features.Tensor(shape=(None,), dtype=np.float32), "index": np.int64}
  )
  directory = tmp_path / "ragged" / "cfg" / "1.0.0"
  examples = ({"ragged": np.zeros(i + 1, np.float32), "index": i} for i in range(3))
  records.write(directory, "ragged", features, examples)
  assert records.Source.of(records.read_only(directory)) is None
