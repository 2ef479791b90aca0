"""Batches of two streams: a student's labelled examples, then its unlabelled ones."""

import numpy as np
import pytest

from mtpkd_jax.data import pipeline

TABLE = {"i": np.arange(40)}
FIRST, EXTRA = np.arange(0, 10), np.arange(10, 40)


def _dataset(**kwargs):
  """Batches of 4 of ``FIRST`` and 6 of ``EXTRA`` (``kwargs`` replace any argument)."""
  options = {"extra_indices": EXTRA, "extra_batch_size": 6, **kwargs}
  return pipeline.batch_dataset(
    TABLE, FIRST, batch_size=4, seed=3, drop_remainder=True, num_epochs=None, **options
  )


def test_each_batch_is_the_first_streams_batch_then_the_extra_rows():
  alone = pipeline.batch_dataset(
    TABLE, FIRST, batch_size=4, seed=3, drop_remainder=True, num_epochs=None
  )
  joined = _dataset()
  for step in range(12):
    rows = joined[step]["i"]
    np.testing.assert_array_equal(rows[:4], alone[step]["i"])
    assert set(rows[4:]) <= set(EXTRA) and len(set(rows[4:])) == 6


def test_the_extra_rows_go_through_every_extra_example_once_an_epoch():
  joined = _dataset()
  # 30 extra examples in batches of 6: an epoch of 5 batches, reshuffled the next.
  epochs = [np.concatenate([joined[s]["i"][4:] for s in range(e * 5, e * 5 + 5)]) for e in (0, 1)]
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), EXTRA)
  assert not np.array_equal(epochs[0], epochs[1])
  # Their order is not the first stream's.
  assert not np.array_equal(joined[0]["i"][4:8] - 10, joined[0]["i"][:4])


def test_shards_split_the_joined_batch():
  whole = _dataset()
  shards = [_dataset(num_shards=2, shard_index=i) for i in range(2)]
  for step in (0, 7):
    rows = np.concatenate([shard[step]["i"] for shard in shards])
    np.testing.assert_array_equal(rows, whole[step]["i"])


def test_a_bad_extra_stream_is_named():
  with pytest.raises(ValueError, match="`extra_indices` must be a non-empty"):
    _dataset(extra_indices=[], extra_batch_size=1)
  with pytest.raises(ValueError, match=r"`extra_batch_size` must be in \[1, 30\]"):
    _dataset(extra_batch_size=31)
  with pytest.raises(ValueError, match="its 9 rows a multiple of `num_shards`"):
    _dataset(extra_batch_size=5, num_shards=2)
