"""CMU-MOSI built from dummy SDK computational sequences (and a MulT pickle) and read back."""

import pickle

import h5py
import numpy as np
import pytest

from mtpkd_jax.data.builders import files, report
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
    fold = next(s for s in ("train", "val", "test") if video in dummy.mosi.FOLDS[s])
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
    del f["COVAREP"]["data"][dummy.mosi.FOLDS["test"][0]]
  dataset, built, _ = _build(tmp_path / "manual", tmp_path, max_bad_fraction=0.2)
  assert [s["unit"] for s in built.skipped] == [dummy.mosi.FOLDS["test"][0]]
  assert "has no video" in built.skipped[0]["reason"]
  assert len(dataset) == 5 * 3
  with pytest.raises(report.TooManyBadFilesError):
    _build(tmp_path / "manual", tmp_path / "strict")


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
