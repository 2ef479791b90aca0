"""Tests of `synthetic_affect`'s MOSI-like sentiment configs: layout, labels, determinism,
schema, and which modality carries how much sentiment."""

import dataclasses

import numpy as np
import pytest

from mtpkd_jax.data import pipeline, synthetic_affect, synthetic_sentiment
from tests.data.conftest import build, generate, read_raw

CONFIGS = {config.name: config for config in synthetic_affect.CONFIGS}
TINY = "synthetic_affect/sentiment_tiny"
SEQUENCES = ("text", "audio", "visual")


@pytest.fixture(scope="module")
def sentiment_tiny_dir(tmp_path_factory):
  """A TFDS data directory holding a built `sentiment_tiny`."""
  return build(tmp_path_factory, TINY)


@pytest.fixture(scope="module")
def sentiment_tiny(sentiment_tiny_dir):
  """`sentiment_tiny`'s stored features, in memory."""
  return read_raw(TINY, sentiment_tiny_dir)


@pytest.fixture(scope="module")
def sentiment():
  """The default `sentiment` config's examples (30 speakers x 40 utterances)."""
  return generate(CONFIGS["sentiment"])


def test_tiny_layout_shapes_dtypes_and_masks(sentiment_tiny):
  config = CONFIGS["sentiment_tiny"]
  n, words = config.num_examples, config.max_words
  sizes = {"text": config.text_features, "audio": config.audio_features}
  sizes["visual"] = config.visual_features
  mask = sentiment_tiny["mask_text"]
  assert mask.shape == (n, words) and mask.dtype == np.bool_
  lengths = mask.sum(1)
  # Masks are prefixes, shared by the word-aligned modalities.
  np.testing.assert_array_equal(mask, np.arange(words) < lengths[:, None])
  assert lengths.min() >= config.min_words and lengths.max() <= config.max_words
  assert len(np.unique(lengths)) > 2, "lengths should vary"
  for name in SEQUENCES:
    assert (
      sentiment_tiny[name].shape == (n, words, sizes[name])
      and sentiment_tiny[name].dtype == np.float32
    ), name
    np.testing.assert_array_equal(sentiment_tiny[f"mask_{name}"], mask, err_msg=name)
    assert np.all(sentiment_tiny[name][~mask] == 0), f"{name} is not zero-padded"
    assert np.all(np.abs(sentiment_tiny[name][mask]).sum(-1) > 0), f"{name} has empty words"
  assert sentiment_tiny["sentiment"].dtype == np.float32
  for key in ("label2", "label7", "subject", "index"):
    assert sentiment_tiny[key].dtype == np.int64, key
  np.testing.assert_array_equal(sentiment_tiny["index"], np.arange(n))
  np.testing.assert_array_equal(
    sentiment_tiny["subject"], np.repeat(np.arange(config.num_subjects), config.samples_per_subject)
  )


def test_labels_follow_the_score(sentiment):
  score = sentiment["sentiment"].astype(np.float64)
  assert np.all(np.abs(score) <= 3.0)
  np.testing.assert_array_equal(sentiment["label2"], score >= 0)
  np.testing.assert_array_equal(sentiment["label7"], np.floor(score + 0.5) + 3)
  counts = np.bincount(sentiment["label7"], minlength=7) / len(score)
  # MOSI-like: every class occurs, most utterances are mild, the extremes are rare.
  assert np.all(counts > 0)
  assert counts[2:5].sum() > 0.5 and counts[[0, 6]].sum() < 0.1
  assert 0.4 < np.mean(sentiment["label2"]) < 0.6


def test_builds_are_identical_and_match_direct_generation(sentiment_tiny, tmp_path):
  again = read_raw(TINY, str(tmp_path))
  direct = generate(CONFIGS["sentiment_tiny"])
  assert again.keys() == sentiment_tiny.keys() == direct.keys()
  for key in sentiment_tiny:
    np.testing.assert_array_equal(again[key], sentiment_tiny[key], err_msg=key)
    np.testing.assert_array_equal(direct[key], sentiment_tiny[key], err_msg=key)


def test_a_speakers_utterances_do_not_depend_on_the_others():
  config = CONFIGS["sentiment_tiny"]
  fewer = dataclasses.replace(config, num_subjects=4)
  for speaker in reversed(range(4)):
    alone = synthetic_affect.subject_examples(fewer, speaker)
    for a, b in zip(alone, synthetic_affect.subject_examples(config, speaker), strict=True):
      for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  other_seed = synthetic_affect.subject_examples(dataclasses.replace(config, seed=1), 0)
  assert not np.array_equal(other_seed[0]["audio"], alone[0]["audio"])


@pytest.mark.parametrize(
  "name, kind, target",
  [
    ("sentiment", "regression", "sentiment"),
    ("sentiment_binary", "classification", "label2"),
    ("sentiment_7class", "classification", "label7"),
    ("sentiment_tiny", "regression", "sentiment"),
  ],
)
def test_schema(name, kind, target):
  config = CONFIGS[name]
  schema = config.schema
  assert schema.names == SEQUENCES and schema.has_subject
  sizes = (config.text_features, config.audio_features, config.visual_features)
  for modality, size in zip(schema.modalities, sizes, strict=True):
    assert (modality.kind, modality.masked) == ("sequence", True), modality
    assert modality.shape == (config.max_words, size), modality
  assert schema.task.kind == kind and config.target_keys == (target,)
  expected = {
    "sentiment": ("sentiment",),
    "label2": ("negative", "non_negative"),
    "label7": ("-3", "-2", "-1", "0", "1", "2", "3"),
  }
  assert schema.task.names == expected[target]


def test_opens_through_the_pipeline(sentiment_tiny_dir, sentiment_tiny, tmp_path):
  dataset = pipeline.open_dataset(TINY, sentiment_tiny_dir)
  assert dataset.table.keys == (
    *("text", "mask_text", "audio", "mask_audio", "visual", "mask_visual"),
    *("index", "y", "subject"),
  )
  columns = dataset.table.take(np.arange(len(dataset)))
  np.testing.assert_array_equal(dataset.y, sentiment_tiny["sentiment"][:, None])
  for key in ("text", "mask_text", "visual", "mask_visual", "subject"):
    np.testing.assert_array_equal(columns[key], sentiment_tiny[key], err_msg=key)
  small = {"num_subjects": 2, "samples_per_subject": 6}
  for name, label in (("sentiment_binary", "label2"), ("sentiment_7class", "label7")):
    dataset = pipeline.open_dataset(f"synthetic_affect/{name}", str(tmp_path), small)
    raw = read_raw(f"synthetic_affect/{name}", str(tmp_path), small)
    np.testing.assert_array_equal(dataset.y, raw[label], err_msg=name)


def test_bad_sentiment_config_raises(tmp_path):
  with pytest.raises(ValueError, match="classes"):
    pipeline.open_dataset(TINY, str(tmp_path), {"classes": ("BL1", "PA4")})
  config = dataclasses.replace(CONFIGS["sentiment_tiny"], name="bad", min_words=9)
  with pytest.raises(ValueError, match="min_words"):
    synthetic_affect.subject_examples(config, 0)


def _masked_mean(data, name):
  mask = data[f"mask_{name}"][..., None]
  return (data[name] * mask).sum(1) / mask.sum(1)


def _fit(x, y, train):
  """Least squares of `y` on `x` (with an intercept), fitted on `train`, predicted on all."""
  x = np.c_[x, np.ones(len(x))]
  weights, *_ = np.linalg.lstsq(x[train], y[train], rcond=None)
  return x @ weights


def _cross_validated_r(x, y, groups, num_folds=5):
  """Pearson r of `y` and its least-squares predictions from `x`, each `groups` fold
  predicted by a fit on the others."""
  predicted = np.zeros(len(y))
  for fold in range(num_folds):
    test = groups % num_folds == fold
    predicted[test] = _fit(x, y, ~test)[test]
  return np.corrcoef(predicted, y)[0, 1]


def test_text_is_strong_and_the_weak_modalities_carry_per_word_polarity(sentiment):
  score, speaker = sentiment["sentiment"], sentiment["subject"]
  # Speaker-independent folds.
  r = {
    name: _cross_validated_r(_masked_mean(sentiment, name), score, speaker) for name in SEQUENCES
  }
  assert r["text"] > 0.8, r
  assert r["text"] - r["audio"] > 0.25, r
  assert r["audio"] > r["visual"] > 0.1, r

  # Per word: a word's polarity as text shows it (along text's direction of the score),
  # predicted from the weak modality of that word alone. Both relative to the utterance's
  # mean, which removes the voice, the face and anything constant over an utterance.
  mask = sentiment["mask_text"]
  centred = {name: sentiment[name] - _masked_mean(sentiment, name)[:, None] for name in SEQUENCES}
  direction = np.linalg.lstsq(_masked_mean(sentiment, "text"), score, rcond=None)[0]
  polarity = centred["text"][mask] @ direction
  words = np.repeat(speaker, mask.sum(1))
  word_r = {
    name: _cross_validated_r(centred[name][mask], polarity, words) for name in SEQUENCES[1:]
  }
  # Seen: text 0.87, audio 0.47, visual 0.31; per word audio 0.70, visual 0.29.
  assert word_r["audio"] > 0.4 and word_r["visual"] > 0.1, word_r


def test_pad_zero_pads_at_the_end_and_never_cuts():
  padded = synthetic_sentiment.pad(np.array([[1.5, -2.0], [3.0, 4.0]]), 4)
  assert padded.dtype == np.float32
  np.testing.assert_array_equal(padded, [[1.5, -2.0], [3.0, 4.0], [0.0, 0.0], [0.0, 0.0]])
  with pytest.raises(ValueError, match="3 steps does not fit in 2"):
    synthetic_sentiment.pad(np.ones((3, 2)), 2)
