"""Tests of dataset loading by name and of reproducible, resumable batching."""

import itertools
import logging

import numpy as np
import pytest

from mtpkd_jax.data import pipeline
from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data import table as table_lib
from mtpkd_jax.data.builders.dummy import biovid as biovid_dummy
from tests.data.conftest import read_raw

NUM_EXAMPLES = 23
# Small in-memory arrays standing in for a loaded dataset: example `i` is recognisable.
ARRAYS = {
  "video": np.arange(NUM_EXAMPLES, dtype=np.uint8)[:, None, None, None, None]
  * np.ones((1, 2, 4, 4, 3), np.uint8),
  "physio": np.arange(NUM_EXAMPLES, dtype=np.float32)[:, None, None] * np.ones((1, 5, 3)),
  "label": np.arange(NUM_EXAMPLES) % 2,
  "index": np.arange(NUM_EXAMPLES),
}
INDICES = np.arange(3, NUM_EXAMPLES)  # 20 examples.


def test_synthetic_dataset_opens_through_its_schema(tiny_dir, tiny):
  dataset = pipeline.open_dataset("synthetic_affect/tiny", tiny_dir)
  schema = dataset.schema
  assert schema.names == ("video", "physio", "audio")
  assert [m.kind for m in schema.modalities] == ["video", "signal", "sequence"]
  assert schema.task == schema_lib.Task("classification", ("BL1", "PA4"))
  assert dataset.table.keys == ("video", "physio", "audio", "index", "y", "subject")
  columns = dataset.table.take(np.arange(len(dataset)))
  # Canonical columns are the stored features, in `index` order; `y` is the label.
  np.testing.assert_array_equal(columns["y"], tiny["label"])
  np.testing.assert_array_equal(dataset.y, tiny["label"])
  np.testing.assert_array_equal(dataset.subject, tiny["subject"])
  np.testing.assert_array_equal(columns["index"], np.arange(len(dataset)))
  for name in schema.names:
    np.testing.assert_array_equal(columns[name], tiny[name], err_msg=name)
    assert columns[name].shape[1:] == schema.modality(name).shape


def test_regression_targets_stack_in_schema_order(tmp_path):
  dataset = pipeline.open_dataset(
    "synthetic_affect/va_regression", str(tmp_path), {"num_subjects": 2, "samples_per_subject": 4}
  )
  raw = read_raw(
    "synthetic_affect/va_regression", str(tmp_path), {"num_subjects": 2, "samples_per_subject": 4}
  )
  assert dataset.schema.task.names == ("valence", "arousal")
  np.testing.assert_array_equal(dataset.y, np.stack([raw["valence"], raw["arousal"]], -1))


def test_streaming_gives_the_batches_held_in_memory(tiny_dir):
  in_memory = pipeline.open_dataset("synthetic_affect/tiny", tiny_dir, in_memory=True)
  streamed = pipeline.open_dataset("synthetic_affect/tiny", tiny_dir, in_memory=False)
  assert in_memory.in_memory and not streamed.in_memory
  assert isinstance(streamed.table, table_lib.RecordTable)
  kwargs = dict(batch_size=5, seed=3, drop_remainder=True, num_epochs=2)
  indices = np.arange(4, 40)
  pairs = zip(
    pipeline.batches(in_memory.table, indices, **kwargs),
    pipeline.batches(streamed.table, indices, **kwargs),
    strict=True,
  )
  for a, b in pairs:
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize(
  "name", ["synthetic_affect/nope", "biovid/pain_binary", "synthetic_affect"]
)
def test_unknown_name_lists_the_available_ones(name, tmp_path):
  with pytest.raises(ValueError, match="synthetic_affect/pain_binary.*synthetic_affect/tiny"):
    pipeline.open_dataset(name, str(tmp_path))


def test_overrides_build_their_own_config(tiny_dir, tiny):
  overrides = {"num_subjects": 2, "seed": 3}
  smaller = pipeline.open_dataset("synthetic_affect/tiny", tiny_dir, overrides)
  assert len(smaller) == 16
  video = smaller.table.take(np.arange(16), ["video"])["video"]
  assert not np.array_equal(video, tiny["video"][:16])
  # The unmodified config is still there, untouched.
  np.testing.assert_array_equal(read_raw("synthetic_affect/tiny", tiny_dir)["video"], tiny["video"])
  with pytest.raises(ValueError, match="`overrides`.*num_subject"):
    pipeline.open_dataset("synthetic_affect/tiny", tiny_dir, {"num_subject": 2})


def _warnings(caplog) -> list[logging.LogRecord]:
  """The warnings `pipeline` logged (TFDS logs its own through absl too)."""
  return [
    r
    for r in caplog.records
    if r.name == "absl" and r.levelno == logging.WARNING and r.module == "pipeline"
  ]


def test_a_build_on_first_use_warns_of_the_units_it_skipped(tmp_path, caplog):
  # Training builds on first use: the corrupt sample must be named where the user looks.
  manual = tmp_path / "downloads" / "manual"
  subject, _, sample = biovid_dummy.write(manual, subjects=2, samples_per_class=2)[5]
  (manual / "PartA" / "video" / subject / f"{sample}.mp4").write_bytes(b"corrupt")
  options = {"image_size": 8, "max_bad_fraction": 0.2}
  with caplog.at_level(logging.WARNING, logger="absl"):
    dataset = pipeline.open_dataset("biovid/part_a_binary", str(tmp_path), options)
  assert len(dataset) == 7
  assert [s["unit"] for s in dataset.build_report.skipped] == [sample]
  (record,) = _warnings(caplog)
  report_path = pipeline.builder("biovid/part_a_binary", str(tmp_path), options).report_path
  assert sample in record.getMessage() and str(report_path) in record.getMessage()
  assert report_path.is_file()
  caplog.clear()
  with caplog.at_level(logging.WARNING, logger="absl"):
    again = pipeline.open_dataset("biovid/part_a_binary", str(tmp_path), options)
  assert again.build_report is None and not _warnings(caplog)


def test_a_clean_build_does_not_warn(tmp_path, caplog):
  biovid_dummy.write(tmp_path / "downloads" / "manual", subjects=1, samples_per_class=1)
  with caplog.at_level(logging.WARNING, logger="absl"):
    dataset = pipeline.open_dataset("biovid/part_a_binary", str(tmp_path), {"image_size": 8})
  assert dataset.build_report.examples == len(dataset) == 2 and not _warnings(caplog)


def _ids(batches):
  return [batch["index"].tolist() for batch in batches]


def test_one_epoch_visits_every_example_once():
  batches = list(pipeline.batches(ARRAYS, INDICES, batch_size=6, seed=0, drop_remainder=False))
  assert [len(b["index"]) for b in batches] == [6, 6, 6, 2]
  ids = sum(_ids(batches), [])
  assert sorted(ids) == INDICES.tolist() and ids != INDICES.tolist()
  for batch in batches:  # Every key is gathered with the same indices.
    np.testing.assert_array_equal(batch["video"][:, 0, 0, 0, 0], batch["index"])
    np.testing.assert_array_equal(batch["physio"][:, 0, 0], batch["index"])


def test_drop_remainder_and_epochs_do_not_mix():
  batches = list(
    pipeline.batches(ARRAYS, INDICES, batch_size=6, seed=0, drop_remainder=True, num_epochs=3)
  )
  assert len(batches) == 3 * pipeline.steps_per_epoch(20, 6, True) == 9
  epochs = [sum(_ids(batches[e * 3 : e * 3 + 3]), []) for e in range(3)]
  for ids in epochs:
    assert len(set(ids)) == 18 and set(ids) <= set(INDICES.tolist())
  assert epochs[0] != epochs[1] != epochs[2]


def test_no_seed_keeps_the_order():
  batches = pipeline.batches(ARRAYS, INDICES, batch_size=8, seed=None, drop_remainder=False)
  assert sum(_ids(batches), []) == INDICES.tolist()


def test_resumed_run_sees_the_same_batches():
  kwargs = dict(batch_size=6, seed=7, drop_remainder=True, num_epochs=None)
  uninterrupted = _ids(itertools.islice(pipeline.batches(ARRAYS, INDICES, **kwargs), 12))
  resumed = _ids(itertools.islice(pipeline.batches(ARRAYS, INDICES, start_step=5, **kwargs), 7))
  assert resumed == uninterrupted[5:]
  dataset = pipeline.batch_dataset(ARRAYS, INDICES, **kwargs)
  assert [dataset[s]["index"].tolist() for s in (11, 3)] == [uninterrupted[11], uninterrupted[3]]


def test_seeds_give_different_orders():
  kwargs = dict(batch_size=20, drop_remainder=True)
  orders = [_ids(pipeline.batches(ARRAYS, INDICES, seed=s, **kwargs))[0] for s in range(3)]
  assert orders[0] != orders[1] != orders[2]


def test_keys_restrict_the_columns():
  (batch,) = pipeline.batches(
    ARRAYS, INDICES, batch_size=20, seed=0, drop_remainder=True, keys=("video", "index")
  )
  assert set(batch) == {"video", "index"}
  assert batch["video"].shape == (20, 2, 4, 4, 3) and batch["video"].dtype == np.uint8


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(keys=("audio",)), "keys"),
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=21, drop_remainder=True), "batch_size"),
    (dict(num_epochs=0), "num_epochs"),
    (dict(start_step=-1), "start_step"),
    (dict(indices=np.array([], int)), "indices"),
    (dict(indices=np.array([0.5, 1.5])), "indices"),
    (dict(indices=np.array([0, NUM_EXAMPLES])), "indices"),
  ],
)
def test_bad_batch_arguments_raise(kwargs, message):
  arguments = dict(indices=INDICES, batch_size=4, seed=0, drop_remainder=False) | kwargs
  with pytest.raises(ValueError, match=message):
    pipeline.batches(ARRAYS, **arguments)


def test_process_shards_are_the_blocks_of_the_one_process_batches():
  whole = pipeline.batch_dataset(ARRAYS, INDICES, batch_size=8, seed=3, drop_remainder=True)
  shards = [
    pipeline.batch_dataset(
      ARRAYS,
      INDICES,
      batch_size=8,
      seed=3,
      drop_remainder=True,
      num_shards=4,
      shard_index=i,
    )
    for i in range(4)
  ]
  for step in range(len(whole)):
    blocks = [shard[step]["index"] for shard in shards]
    assert [len(b) for b in blocks] == [2] * 4
    np.testing.assert_array_equal(np.concatenate(blocks), whole[step]["index"])


@pytest.mark.parametrize(
  "kwargs",
  [
    {"num_shards": 3, "shard_index": 0, "drop_remainder": True},
    {"num_shards": 2, "shard_index": 2, "drop_remainder": True},
    {"num_shards": 2, "shard_index": 0, "drop_remainder": False},
  ],
)
def test_shards_that_do_not_split_every_batch_raise(kwargs):
  with pytest.raises(ValueError, match="num_shards"):
    pipeline.batch_dataset(ARRAYS, INDICES, batch_size=8, seed=0, **kwargs)


def test_read_ahead_changes_no_batch(tiny_dir):
  # Streamed from the array_record files: the reads ahead run in threads on the one source.
  streamed = pipeline.open_dataset("synthetic_affect/tiny", tiny_dir, in_memory=False)
  kwargs = dict(batch_size=4, seed=7, drop_remainder=True)
  indices = np.arange(3, 40)
  dataset = pipeline.batch_dataset(streamed.table, indices, num_epochs=None, **kwargs)
  read_ahead = pipeline.ReadAhead(dataset, depth=3)
  # In turn, then a resume (back to 2), a jump ahead and a step asked for twice.
  steps = [*range(12), 2, 3, 4, 30, 31, 31, 5]
  for step in steps:
    got, expected = read_ahead(step), dataset[step]
    assert got.keys() == expected.keys()
    for key in got:
      np.testing.assert_array_equal(got[key], expected[key], err_msg=f"step {step}: {key}")
  plain = pipeline.batches(streamed.table, indices, num_epochs=3, read_ahead=0, **kwargs)
  ahead = pipeline.batches(streamed.table, indices, num_epochs=3, read_ahead=3, **kwargs)
  for a, b in zip(plain, ahead, strict=True):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_negative_read_ahead_is_named():
  dataset = pipeline.batch_dataset(ARRAYS, INDICES, batch_size=4, seed=0, drop_remainder=True)
  with pytest.raises(ValueError, match="`depth` must be non-negative"):
    pipeline.ReadAhead(dataset, depth=-1)
