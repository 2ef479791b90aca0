"""CMU-MOSI built from dummy SDK computational sequences (and a MulT pickle) and read back."""

import pickle

import h5py
import numpy as np
import pytest

from mtpkd_jax.data.builders import files, mosi_folds, report
from mtpkd_jax.data.builders.dummy import mosi as dummy
from mtpkd_jax.data.schema import SPLITS
from tests.data.builders import building


def _build(root, tmp_path, name="mosi/sentiment", **options):
  return building.build_and_read(root, tmp_path, name, {"max_words": 6, **options})


def _sequence(path, video):
  with h5py.File(path) as f:
    group = f[list(f)[0]]["data"][video]
    return group["features"][()], group["intervals"][()]


@pytest.mark.parametrize("old_names", [False, True])
def test_segments_words_alignment_labels_and_folds(tmp_path, old_names):
  root = tmp_path / "manual" / "CMU_MOSI"  # One folder level below manual_dir.
  scores = dummy.write(root, old_names=old_names, videos_per_fold=2, segments=3)
  dataset, built, stored = _build(tmp_path / "manual", tmp_path)
  assert len(dataset) == 6 * 3 and not built.skipped
  assert dataset.schema.modality("text").shape == (6, 300)
  assert dataset.schema.modality("audio").shape == (6, 74)
  assert dataset.schema.modality("visual").shape == (6, 47)
  text_file = "CMU_MOSI_TimestampedWordVectors" + ("_1.1" if old_names else "")
  columns = dataset.table.take(np.arange(len(dataset)))
  for i, record in enumerate(stored):
    video = record["video_id"].decode()
    segment = int(record["segment_id"].decode().split("[")[1].rstrip("]"))
    assert record["segment_id"].decode() == f"{video}[{segment}]"
    np.testing.assert_allclose(columns["y"][i], [scores[video][segment]], atol=1e-6)
    fold = next(s for s in ("train", "val", "test") if video in mosi_folds.FOLDS[s])
    assert columns["split"][i] == SPLITS.index(fold)
    # Words 0..2 of the segment (the silence dropped), padded to 6 and masked.
    np.testing.assert_array_equal(columns["mask_text"][i], [1, 1, 1, 0, 0, 0])
    vectors, _ = _sequence(root / f"{text_file}.csd", video)
    np.testing.assert_allclose(columns["text"][i][:3], vectors[4 * segment : 4 * segment + 3])
    assert not columns["text"][i][3:].any()
    # COVAREP at 10 Hz: word w of segment s spans [2s + 0.5w, 2s + 0.5w + 0.5): 5 frames.
    covarep, _ = _sequence(root / "CMU_MOSI_COVAREP.csd", video)
    covarep = np.where(np.isfinite(covarep), covarep, 0.0)
    for w in range(3):
      first = 20 * segment + 5 * w
      np.testing.assert_allclose(
        columns["audio"][i][w], covarep[first : first + 5].mean(0), rtol=1e-5, atol=1e-6
      )
  assert len(set(dataset.subject.tolist())) == 6


def test_binary_is_negative_vs_non_negative(tmp_path):
  scores = dummy.write(tmp_path / "manual", videos_per_fold=2, segments=3)
  dataset, _, stored = _build(tmp_path / "manual", tmp_path, "mosi/binary")
  assert dataset.schema.task.names == ("negative", "non_negative")
  for y, record in zip(dataset.y, stored, strict=True):
    video, segment = record["video_id"].decode(), int(record["segment_id"][-2:-1])
    assert y == (scores[video][segment] >= 0)
    assert record["sentiment"] == pytest.approx(scores[video][segment])


def test_missing_labels_name_the_file_pattern(tmp_path):
  dummy.write(tmp_path / "manual", videos_per_fold=2, segments=3)
  (tmp_path / "manual" / "CMU_MOSI_Opinion_Labels.csd").unlink()
  with pytest.raises(files.MissingFilesError, match=r"(?s)Opinion_Labels.*mmdatasdk"):
    _build(tmp_path / "manual", tmp_path)


def test_a_video_missing_from_a_feature_file_is_skipped_and_listed(tmp_path):
  dummy.write(tmp_path / "manual", videos_per_fold=2, segments=3)
  with h5py.File(tmp_path / "manual" / "CMU_MOSI_COVAREP.csd", "a") as f:
    del f["COVAREP"]["data"][mosi_folds.FOLDS["test"][0]]
  dataset, built, _ = _build(tmp_path / "manual", tmp_path, max_bad_fraction=0.2)
  assert [s["unit"] for s in built.skipped] == [mosi_folds.FOLDS["test"][0]]
  assert "has no video" in built.skipped[0]["reason"]
  assert len(dataset) == 5 * 3
  with pytest.raises(report.TooManyBadFilesError):
    _build(tmp_path / "manual", tmp_path / "strict")


def _shift_labels(root, count):
  """Moves the label intervals of the first ``count`` videos past every word (as labels in
  ms would be); returns those videos."""
  with h5py.File(root / "CMU_MOSI_Opinion_Labels.csd", "r+") as f:
    data = f["Opinion Segment Labels"]["data"]
    videos = sorted(data)[:count]
    for video in videos:
      data[video]["intervals"][...] = data[video]["intervals"][()] + 1000.0
  return videos


def test_segments_that_no_word_falls_in_are_dropped_and_count_as_bad(tmp_path):
  dummy.write(tmp_path / "manual", videos_per_fold=2, segments=3)
  shifted = _shift_labels(tmp_path / "manual", 3)
  # 9 of the 18 segments lost: more than the default 5%.
  with pytest.raises(report.TooManyBadFilesError, match=r"50.0% of the examples were dropped"):
    _build(tmp_path / "manual", tmp_path / "strict")
  dataset, built, stored = _build(tmp_path / "manual", tmp_path, max_bad_fraction=0.5)
  assert len(dataset) == 9 and not built.skipped and not built.repaired
  assert [d["unit"] for d in built.dropped] == [f"{v}[{i}]" for v in shifted for i in range(3)]
  assert built.dropped[1]["reason"] == (
    "no word of CMU_MOSI_TimestampedWordVectors.csd in the segment [1002, 1004) s"
  )
  assert not {r["video_id"].decode() for r in stored} & set(shifted)


def test_a_build_that_writes_nothing_fails_with_a_named_error(tmp_path):
  dummy.write(tmp_path / "manual", videos_per_fold=2, segments=3)
  _shift_labels(tmp_path / "manual", 6)
  with pytest.raises(report.NoExampleWrittenError, match=r"(?s)No example written.*18 dropped"):
    _build(tmp_path / "manual", tmp_path, max_bad_fraction=1.0)


def test_a_video_in_no_standard_fold_is_excluded_not_bad(tmp_path):
  dummy.write(tmp_path / "manual", videos_per_fold=2, segments=3)
  with h5py.File(tmp_path / "manual" / "CMU_MOSI_Opinion_Labels.csd", "r+") as f:
    f.copy(f["Opinion Segment Labels/data/2iD-tVS8NPw"], "Opinion Segment Labels/data/zzNotMOSI")
  dataset, built, _ = _build(tmp_path / "manual", tmp_path, max_bad_fraction=0.0)
  assert len(dataset) == 6 * 3 and built.units == 7
  assert not built.skipped and not built.dropped and not built.repaired
  assert [(e["unit"], e["reason"]) for e in built.excluded] == [
    ("zzNotMOSI", "in none of the SDK's standard folds")
  ]


def test_pickles_need_allow_pickle_and_then_warn(tmp_path, caplog):
  rng = np.random.default_rng(0)
  splits = {
    s: {
      "text": rng.normal(size=(n, 50, 300)).astype(np.float32),
      "audio": rng.normal(size=(n, 50, 5)).astype(np.float32),
      "vision": rng.normal(size=(n, 50, 20)).astype(np.float32),
      "labels": rng.uniform(-3, 3, (n, 1, 1)).astype(np.float32),
      "id": np.array([[f"vid{s}{i}".encode(), b"1", b"2"] for i in range(n)]),
    }
    for s, n in (("train", 4), ("valid", 2), ("test", 3))
  }
  splits["test"]["audio"][0, 0, 0] = -np.inf
  (tmp_path / "manual").mkdir()
  with open(tmp_path / "manual" / "mosi_data.pkl", "wb") as f:
    pickle.dump(splits, f)
  with pytest.raises(ValueError, match="allow_pickle=True"):
    _build(tmp_path / "manual", tmp_path, pickle="mosi_data.pkl", max_words=50)
  dataset, _, stored = _build(
    tmp_path / "manual", tmp_path, pickle="mosi_data.pkl", allow_pickle=True, max_words=50
  )
  assert "Unpickling" in caplog.text
  np.testing.assert_array_equal(dataset.split, [0] * 4 + [1] * 2 + [2] * 3)
  columns = dataset.table.take(np.arange(9))
  np.testing.assert_allclose(
    columns["y"][:, 0],
    np.concatenate([splits[s]["labels"].reshape(-1) for s in ("train", "valid", "test")]),
  )
  np.testing.assert_allclose(columns["visual"][6], splits["test"]["vision"][0])
  assert columns["audio"][6, 0, 0] == 0.0
  assert stored[6]["video_id"].decode() == "vidtest0"
  # MulT's pickles hold no lengths and MulT reads every step: all valid.
  for name in ("text", "audio", "visual"):
    assert dataset.schema.modality(name).shape[0] == 50
    assert columns[f"mask_{name}"].all(), name


def _mmsa_unaligned(tmp_path, **changes):
  """An MMSA ``unaligned_50.pkl`` in small: text ``[n, 8, 4]`` (the attention mask in
  ``text_bert``), audio ``[n, 30, 5]`` (32 steps in ``valid``), vision ``[n, 40, 3]``, with
  ``audio_lengths`` and ``vision_lengths``; ``changes`` override a split's keys."""
  rng = np.random.default_rng(0)
  words = {"train": [3, 8, 1, 5], "valid": [2, 4], "test": [6, 7]}
  audio = {"train": [30, 12, 1, 7], "valid": [32, 9], "test": [3, 30]}
  vision = {"train": [40, 2, 17, 39], "valid": [5, 40], "test": [0, 11]}
  splits = {}
  for name, n in (("train", 4), ("valid", 2), ("test", 2)):
    bert = np.zeros((n, 3, 8), np.int64)
    for i, length in enumerate(words[name]):
      bert[i, 1, :length] = 1
    splits[name] = {
      "text": rng.normal(size=(n, 8, 4)),
      "text_bert": bert,
      "audio": rng.normal(size=(n, 32 if name == "valid" else 30, 5)),
      "vision": rng.normal(size=(n, 40, 3)),
      "audio_lengths": audio[name],
      "vision_lengths": vision[name],
      "regression_labels": rng.uniform(-3, 3, n),
      "id": np.array([f"vid{name}{i}$_${i}" for i in range(n)]),
    }
  for name, keys in changes.items():
    splits[name] |= keys
  (tmp_path / "manual").mkdir()
  with open(tmp_path / "manual" / "unaligned_50.pkl", "wb") as f:
    pickle.dump(splits, f)
  return splits, words, audio, vision


def test_unaligned_pickles_keep_each_modalitys_steps_and_lengths(tmp_path):
  splits, words, audio, vision = _mmsa_unaligned(tmp_path)
  dataset, _, stored = _build(
    tmp_path / "manual", tmp_path, pickle="unaligned_50.pkl", allow_pickle=True
  )
  # Each modality its own steps: none cut to `max_words` (6), nor audio to train's 30.
  assert dataset.schema.modality("text").shape == (8, 4)
  assert dataset.schema.modality("audio").shape == (32, 5)
  assert dataset.schema.modality("visual").shape == (40, 3)
  columns = dataset.table.take(np.arange(8))
  order = ("train", "valid", "test")
  for key, lengths in (("text", words), ("audio", audio), ("visual", vision)):
    steps = dataset.schema.modality(key).shape[0]
    expected = [np.arange(steps) < n for name in order for n in lengths[name]]
    np.testing.assert_array_equal(columns[f"mask_{key}"], expected, err_msg=key)
  # The audio's last steps are kept; a 30-step split is zero-padded to 32.
  np.testing.assert_allclose(columns["audio"][0, :30], splits["train"]["audio"][0], rtol=1e-6)
  assert not columns["audio"][0, 30:].any()
  np.testing.assert_allclose(columns["audio"][4], splits["valid"]["audio"][0], rtol=1e-6)
  np.testing.assert_allclose(columns["visual"][7], splits["test"]["vision"][1], rtol=1e-6)
  assert stored[4]["video_id"].decode() == "vidvalid0"


def test_a_pickle_length_past_its_sequence_is_refused(tmp_path):
  _mmsa_unaligned(tmp_path, test={"vision_lengths": [0, 41]})
  with pytest.raises(
    ValueError,
    match=r"`test`: `vision_lengths` gives lengths \[41\] \(examples \[1\]\) outside the 40 steps",
  ):
    _build(tmp_path / "manual", tmp_path, pickle="unaligned_50.pkl", allow_pickle=True)
