"""Tests of the `synthetic_affect` builder: build, determinism, labels, modality strengths."""

import dataclasses

import numpy as np
import pytest

from mtpkd_jax.data import splits, synthetic_affect
from tests.data.conftest import generate, read_raw

CONFIGS = {config.name: config for config in synthetic_affect.CONFIGS}


def test_tiny_shapes_and_dtypes(tiny):
  config = CONFIGS["tiny"]
  n = config.num_examples
  for key, shape in config.shapes.items():
    assert tiny[key].shape == (n, *shape), key
  assert tiny["video"].dtype == np.uint8
  assert tiny["physio"].dtype == tiny["audio"].dtype == np.float32
  for key in ("label", "subject", "index"):
    assert tiny[key].dtype == np.int64, key
  for key in ("valence", "arousal"):
    assert tiny[key].dtype == np.float32, key
    assert np.all(np.abs(tiny[key]) <= 1.0), key
  np.testing.assert_array_equal(tiny["index"], np.arange(n))
  np.testing.assert_array_equal(np.unique(tiny["subject"]), np.arange(config.num_subjects))
  assert all(np.isfinite(tiny[k]).all() for k in ("physio", "audio"))


def test_pain_labels_are_balanced_within_each_subject(tiny):
  counts = np.zeros((CONFIGS["tiny"].num_subjects, 2), int)
  np.add.at(counts, (tiny["subject"], tiny["label"]), 1)
  np.testing.assert_array_equal(counts, CONFIGS["tiny"].samples_per_subject // 2)


def test_builds_are_identical(tiny, tmp_path):
  again = read_raw("synthetic_affect/tiny", str(tmp_path))
  assert again.keys() == tiny.keys()
  for key in tiny:
    np.testing.assert_array_equal(again[key], tiny[key], err_msg=key)


def test_seed_changes_the_data():
  config = dataclasses.replace(CONFIGS["tiny"], num_subjects=1)
  a = synthetic_affect.subject_examples(config, 0)
  b = synthetic_affect.subject_examples(dataclasses.replace(config, seed=1), 0)
  assert not np.array_equal(a[0]["video"], b[0]["video"])


def _small(name, **overrides):
  """A registered config shrunk to tiny shapes (keeps the task and classes)."""
  shapes = {
    k: getattr(CONFIGS["tiny"], k)
    for k in ("num_frames", "image_size", "physio_rate", "audio_steps", "audio_features")
  }
  return dataclasses.replace(CONFIGS[name], name="small", **(shapes | overrides))


def test_five_class_config_uses_every_level():
  data = generate(_small("pain_5class", num_subjects=2, samples_per_subject=10))
  np.testing.assert_array_equal(np.bincount(data["label"]), [4, 4, 4, 4, 4])
  # Higher pain levels feel worse on average.
  mean_arousal = [data["arousal"][data["label"] == c].mean() for c in range(5)]
  assert mean_arousal[0] < mean_arousal[-1]


def test_va_label_is_the_quadrant():
  data = generate(_small("va_regression", num_subjects=3, samples_per_subject=20))
  quadrant = 2 * (data["valence"] >= 0) + (data["arousal"] >= 0)
  np.testing.assert_array_equal(data["label"], quadrant)
  assert len(np.unique(data["label"])) == 4


def _ridge_probe_accuracy(features, labels, subjects, num_folds=4, l2=10.0):
  """Binary ridge-regression classifier, cross-validated over subject-independent folds."""
  correct = 0
  for fold in range(num_folds):
    split = splits.subject_folds(subjects, num_folds, fold, val_subjects=0, seed=0)
    train, test = split["train"], split["test"]
    mean, std = features[train].mean(0), features[train].std(0) + 1e-6
    x_train = np.c_[(features[train] - mean) / std, np.ones(len(train))]
    x_test = np.c_[(features[test] - mean) / std, np.ones(len(test))]
    targets = np.where(labels[train] == 1, 1.0, -1.0)
    weights = np.linalg.solve(
      x_train.T @ x_train + l2 * np.eye(x_train.shape[1]), x_train.T @ targets
    )
    correct += np.sum((x_test @ weights > 0) == (labels[test] == 1))
  return correct / len(labels)


def _video_features(video):
  """Grey 4x4-block means around the clip's middle, and their change from the clip's ends."""
  grey = video.astype(np.float32).mean(-1) / 255.0
  n, frames, height, width = grey.shape
  blocks = (
    grey.reshape(n, frames, height // 4, 4, width // 4, 4).mean((3, 5)).reshape(n, frames, -1)
  )
  middle = blocks[:, frames // 2 - 1 : frames // 2 + 1].mean(1)
  return np.concatenate([middle, middle - blocks[:, [0, -1]].mean(1)], axis=1)


def _physio_features(physio, windows=5):
  """Per-channel mean and standard deviation over `windows` consecutive time windows."""
  n, length, _ = physio.shape
  parts = physio[:, : length // windows * windows].reshape(n, windows, length // windows, -1)
  return np.concatenate([parts.mean(2).reshape(n, -1), parts.std(2).reshape(n, -1)], axis=1)


def test_physiology_is_much_more_informative_than_video():
  # The default pain_binary generator, on fewer subjects to stay fast.
  config = dataclasses.replace(
    CONFIGS["pain_binary"], name="probe", num_subjects=12, samples_per_subject=24
  )
  data = generate(config)
  video = _ridge_probe_accuracy(_video_features(data["video"]), data["label"], data["subject"])
  physio = _ridge_probe_accuracy(_physio_features(data["physio"]), data["label"], data["subject"])
  # Seen: video 0.65-0.70, physio 0.90-0.98 over seeds 0-4.
  assert video > 0.55, "video should carry the label weakly"
  assert physio > 0.85, "physiology should carry the label strongly"
  assert physio - video > 0.15


def test_unknown_task_raises():
  config = dataclasses.replace(CONFIGS["tiny"], name="bad", task="laughter", num_subjects=1)
  with pytest.raises(ValueError, match="task"):
    synthetic_affect.subject_examples(config, 0)
