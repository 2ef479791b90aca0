"""Aff-Wild2 (VA) built from dummy files in the release layout and read back."""

import numpy as np
import pytest
from PIL import Image

from mtpkd_jax.data import pipeline
from mtpkd_jax.data.builders.dummy import affwild2 as dummy

OPTIONS = {"image_size": 16, "clip_length": 8, "clip_stride": 8, "n_mels": 8}


def _build(root, tmp_path):
  builder = pipeline.builder("affwild2/va", str(tmp_path / "tfds"), OPTIONS, str(root))
  report = builder.download_and_prepare()
  dataset = pipeline.open_dataset("affwild2/va", str(tmp_path / "tfds"), OPTIONS)
  stored = builder.as_data_source("train").__getitems__(range(len(dataset)))
  return dataset, report, sorted(stored, key=lambda r: r["index"])


def _labels(path):
  return np.loadtxt(path, delimiter=",", skiprows=1)


def _level(crops, number):
  """The grey level of a frame's crop as written (0 where the crop is missing)."""
  path = crops / f"{number:05d}.jpg"
  return np.asarray(Image.open(path)).mean() if path.is_file() else 0.0


@pytest.mark.parametrize("edition", ["abaw6", "abaw2"])
def test_clips_masks_ids_and_splits(tmp_path, edition):
  root = tmp_path / "manual"
  stems = dummy.write(root, edition=edition)
  dataset, report, stored = _build(root, tmp_path)
  assert not report.skipped
  # Each trial misses the crop of frame 5, an annotated one (the first three are not).
  assert sorted(r["unit"] for r in report.repaired) == sorted(stems)
  assert all("no crop for 1 of the 17 annotated frames" in r["reason"] for r in report.repaired)
  # 20 frames, clips of 8 every 8 plus one ending at the last frame: starts 0, 8, 12.
  assert len(dataset) == 3 * len(stems) == 12
  assert dataset.schema.modality("video").shape == (8, 16, 16, 3)
  assert dataset.schema.modality("audio").shape == (8, 8)
  folder = next(root.glob("*/VA_*"))
  for record in stored:
    stem = record["subject_name"].decode()
    assert record["video_id"].decode() == stem.removesuffix("_left").removesuffix("_right")
    split = "Validation_Set" if stem.startswith("10-") else "Train_Set"
    assert record["split"] == {"Train_Set": 0, "Validation_Set": 2}[split]
    labels = _labels(folder / split / f"{stem}.txt")[record["frame_numbers"] - 1]
    valid = labels[:, 0] != -5
    np.testing.assert_array_equal(record["frame_mask"], valid)
    np.testing.assert_allclose(record["y"], labels[valid].mean(0), rtol=1e-5)
    # Each frame is its crop (uniform grey), a missing one zero-filled.
    levels = [_level(root / "cropped_aligned" / stem, n) for n in record["frame_numbers"]]
    np.testing.assert_allclose(record["video"].mean(axis=(1, 2, 3)), levels, atol=1.5)
    assert np.ptp(record["video"], axis=(1, 2, 3)).max() <= 3
    assert np.isfinite(record["audio"]).all()
  assert {r["subject_name"].decode() for r in stored} == set(stems)
  # The per-frame features, for per-frame scoring, are read with the dataset, in index order.
  extra = dataset.extra.take(np.arange(len(dataset)), ("frame_mask", "frame_numbers"))
  np.testing.assert_array_equal(extra["frame_numbers"], [r["frame_numbers"] for r in stored])
  np.testing.assert_array_equal(extra["frame_mask"], [r["frame_mask"] for r in stored])


def test_a_corrupt_video_and_a_short_annotation_are_skipped_and_listed(tmp_path):
  root = tmp_path / "manual"
  dummy.write(root)
  (root / "batch1" / "1-30-1280x720.mp4").write_bytes(b"not a video")
  short = root / "6th ABAW Annotations/VA_Estimation_Challenge/Train_Set/5-25-1920x1080-1_left.txt"
  short.write_text("valence,arousal\n0.1,0.2\n")
  builder = pipeline.builder(
    "affwild2/va", str(tmp_path / "tfds"), {**OPTIONS, "max_bad_fraction": 0.5}, str(root)
  )
  report = builder.download_and_prepare()
  assert sorted(s["unit"] for s in report.skipped) == ["1-30-1280x720", "5-25-1920x1080-1_left"]


def test_a_trial_without_crops_is_skipped_and_partial_misses_are_listed(tmp_path):
  root = tmp_path / "manual"
  dummy.write(root)
  for path in (root / "cropped_aligned" / "1-30-1280x720").glob("*.jpg"):
    path.rename(path.with_suffix(".png"))  # Named otherwise: none is found.
  for number in range(6, 11):
    (root / "cropped_aligned" / "10-30-640x360" / f"{number:05d}.jpg").unlink()
  options = {**OPTIONS, "max_bad_fraction": 0.3}
  builder = pipeline.builder("affwild2/va", str(tmp_path / "tfds"), options, str(root))
  report = builder.download_and_prepare()
  [skipped] = report.skipped
  assert skipped["unit"] == "1-30-1280x720"
  assert skipped["path"] == str(root / "cropped_aligned" / "1-30-1280x720")
  assert "none of the 17 annotated frames has its crop <nnnnn>.jpg" in skipped["reason"]
  assert "00001.png" in skipped["reason"]
  repaired = {r["unit"]: r["reason"] for r in report.repaired}
  assert "no crop for 6 of the 17 annotated frames" in repaired["10-30-640x360"]
  assert set(repaired) == {"10-30-640x360", "5-25-1920x1080-1_left", "5-25-1920x1080-1_right"}
  assert report.examples == 9  # The three other trials' clips.
