"""Tests of dataset loading by name and of reproducible, resumable batching."""

import itertools

import numpy as np
import pytest

from mtpkd_jax.data import pipeline

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


def test_load_matches_dataset_info(tiny):
  info = pipeline.dataset_info("synthetic_affect/tiny")
  assert info["num_classes"] == 2 and info["task"] == "pain"
  assert len(tiny["label"]) == info["num_examples"]
  for key, shape in info["shapes"].items():
    assert tiny[key].shape[1:] == shape, key
  assert set(tiny) == {*info["shapes"], "label", "valence", "arousal", "subject", "index"}


def test_dataset_info_of_every_config():
  assert pipeline.dataset_info("synthetic_affect/pain_binary")["shapes"] == {
    "video": (10, 32, 32, 3),
    "physio": (352, 3),
    "audio": (20, 16),
  }
  assert pipeline.dataset_info("synthetic_affect/pain_5class")["num_classes"] == 5
  assert pipeline.dataset_info("synthetic_affect/va_regression")["task"] == "va"


@pytest.mark.parametrize(
  "name", ["synthetic_affect/nope", "biovid/pain_binary", "synthetic_affect"]
)
def test_unknown_name_lists_the_available_ones(name, tmp_path):
  with pytest.raises(ValueError, match="synthetic_affect/pain_binary.*synthetic_affect/tiny"):
    pipeline.load(name, str(tmp_path))
  with pytest.raises(ValueError, match="available"):
    pipeline.dataset_info(name)


def test_overrides_build_their_own_config(tiny_dir, tiny):
  overrides = {"num_subjects": 2, "seed": 3}
  smaller = pipeline.load("synthetic_affect/tiny", tiny_dir, overrides)
  info = pipeline.dataset_info("synthetic_affect/tiny", overrides)
  assert len(smaller["label"]) == info["num_examples"] == 16
  assert not np.array_equal(smaller["video"], tiny["video"][:16])
  # The unmodified config is still there, untouched.
  np.testing.assert_array_equal(
    pipeline.load("synthetic_affect/tiny", tiny_dir)["video"], tiny["video"]
  )
  with pytest.raises(ValueError, match="`overrides`.*num_subject"):
    pipeline.dataset_info("synthetic_affect/tiny", {"num_subject": 2})


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


def test_modalities_restrict_only_the_inputs():
  (batch,) = pipeline.batches(
    ARRAYS, INDICES, batch_size=20, seed=0, drop_remainder=True, modalities=("video",)
  )
  assert set(batch) == {"video", "label", "index"}
  assert batch["video"].shape == (20, 2, 4, 4, 3) and batch["video"].dtype == np.uint8


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(modalities=("audio",)), "modalities"),
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
