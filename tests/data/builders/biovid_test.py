"""BioVid Part A / B built from dummy files in the release layout and read back."""

import shutil

import numpy as np
import pytest

from mtpkd_jax.data import pipeline, splits
from mtpkd_jax.data.builders import biovid, files, report
from mtpkd_jax.data.builders.dummy import biovid as dummy
from tests.data.builders import building

SMALL = {"image_size": 16}


def _build(root, tmp_path, name="biovid/part_a_binary", **options):
  return building.build_and_read(root, tmp_path, name, {**SMALL, **options})


def _csv(path):
  """The biosignals, read independently: a dict of named columns."""
  table = np.genfromtxt(path, delimiter="\t", names=True)
  return {name: table[name] for name in table.dtype.names}


def test_frames_signals_labels_and_ids(tmp_path):
  root = tmp_path / "manual"
  written = dummy.write(root, subjects=3, samples_per_class=2)
  # One video whose frame i has the value 8 * (i - 40): which frames were taken is visible.
  subject, _, sample = written[0]
  values = np.clip(8 * (np.arange(72) - 40), 0, 255).astype(np.uint8)
  ramp = np.repeat(values, 24 * 32 * 3).reshape(72, 24, 32, 3)
  dummy.write_video(root / "PartA" / "video" / subject / f"{sample}.mp4", ramp)
  dataset, built, stored = _build(root, tmp_path, signal_window=(1.0, 3.0))
  assert len(dataset) == len(written) == 12 and not built.skipped
  assert dataset.schema.modality("video").shape == (10, 16, 16, 3)
  assert dataset.schema.modality("physio").shape == (1024, 3)
  columns = dataset.table.take(np.arange(len(dataset)))
  expected = 8 * (np.round(np.linspace(50, 70, 10)) - 40)
  np.testing.assert_allclose(columns["video"][0].mean(axis=(1, 2, 3)), expected, atol=3.5)
  for i, (record, (subject, level, sample)) in enumerate(zip(stored, written, strict=True)):
    assert (record["subject_name"].decode(), record["video_id"].decode()) == (subject, sample)
    assert columns["y"][i] == ("BL1", "PA4").index(level)
    assert record["pain_level"] == biovid.LEVELS.index(level)
    signals = _csv(root / "PartA" / "biosignals_filtered" / subject / f"{sample}_bio.csv")
    wanted = np.stack([signals[c][512:1536] for c in ("gsr", "ecg", "emg_trapezius")], axis=1)
    np.testing.assert_allclose(columns["physio"][i], wanted, rtol=1e-6)
  np.testing.assert_array_equal(np.unique(dataset.subject), [1, 2, 3])  # samples.csv's ids


@pytest.mark.parametrize(
  "layout", [{"samples_csv": "root"}, {"samples_csv": ""}, {"nest": True, "part": "b"}]
)
def test_layout_variations(tmp_path, layout):
  part = layout.get("part", "a")
  root = tmp_path / "manual" / "BioVid"
  written = dummy.write(root, subjects=2, samples_per_class=1, classes=biovid.LEVELS, **layout)
  if part == "a":
    (root / "PartA").rename(root / "partA")
  dataset, _, stored = _build(tmp_path / "manual", tmp_path, f"biovid/part_{part}_5class")
  order = (
    [s for _, _, s in written]
    if layout.get("samples_csv") != ""
    else sorted(s for _, _, s in written)
  )  # samples.csv's order, or the file names'.
  assert [r["video_id"].decode() for r in stored] == order
  levels = {s: biovid.LEVELS.index(level) for _, level, s in written}
  assert [int(y) for y in dataset.y] == [levels[r["video_id"].decode()] for r in stored]
  assert dataset.schema.modality("physio").shape == (2816, len(biovid.CHANNELS[part]))


def test_without_samples_csv_hidden_files_are_not_samples_and_misnamed_videos_are_listed(
  tmp_path,
):
  root = tmp_path / "manual"
  written = dummy.write(root, subjects=2, samples_per_class=2, samples_csv="")
  video_dir = root / "PartA" / "video"
  for path in list(video_dir.glob("*/*.mp4")):
    (path.parent / f"._{path.name}").write_bytes(b"\x00\x05\x16\x07")  # macOS AppleDouble.
  subject, _, sample = written[0]
  nameless = video_dir / subject / "clip.mp4"
  foreign = video_dir / subject / f"{written[-1][0]}-PA4-001.mp4"  # Another subject's name.
  for path in (nameless, foreign):
    shutil.copy(video_dir / subject / f"{sample}.mp4", path)
  dataset, built, stored = _build(root, tmp_path, max_bad_fraction=0.25)
  assert [r["video_id"].decode() for r in stored] == sorted(s for _, _, s in written)
  assert built.units == len(written) + 2
  reasons = {s["path"]: s["reason"] for s in built.skipped}
  assert set(reasons) == {str(nameless), str(foreign)}
  assert all(f"`{subject}-<BL1|PA1..PA4>-<nnn>.mp4`" in r for r in reasons.values())


def test_loso_folds_carve_validation_subjects_from_training(tmp_path):
  dummy.write(tmp_path / "manual", subjects=4, samples_per_class=1)
  dataset, _, _ = _build(tmp_path / "manual", tmp_path)
  for fold in range(4):
    split = splits.subject_folds(dataset.subject, 4, fold, val_subjects=1, seed=0)
    held = [set(dataset.subject[split[k]].tolist()) for k in ("train", "val", "test")]
    assert [len(h) for h in held] == [2, 1, 1] and not (held[0] & held[1] | held[0] & held[2])


def test_missing_biosignals_name_the_folder_and_the_instructions(tmp_path):
  dummy.write(tmp_path / "manual", subjects=1, samples_per_class=1)
  shutil.rmtree(tmp_path / "manual" / "PartA" / "biosignals_raw")
  options = {**SMALL, "signals": "raw"}
  builder = pipeline.builder(
    "biovid/part_a_binary", str(tmp_path), options, str(tmp_path / "manual")
  )
  with pytest.raises(files.MissingFilesError, match=r"(?s)`biosignals_raw/`.*PartA.*BioVid"):
    builder.download_and_prepare()


def test_corrupt_video_short_csv_and_missing_file_are_skipped_and_listed(tmp_path):
  root = tmp_path / "manual"
  written = dummy.write(root, subjects=3, samples_per_class=2)
  (subject0, _, truncated), (subject1, _, short), (subject2, _, gone) = (
    written[0],
    written[5],
    written[9],
  )
  video = root / "PartA" / "video" / subject0 / f"{truncated}.mp4"
  video.write_bytes(video.read_bytes()[:300])
  csv_path = root / "PartA" / "biosignals_filtered" / subject1 / f"{short}_bio.csv"
  csv_path.write_text("\n".join(csv_path.read_text().splitlines()[:1000]))
  (root / "PartA" / "video" / subject2 / f"{gone}.mp4").unlink()
  dataset, built, stored = _build(root, tmp_path, max_bad_fraction=0.3)
  reasons = {s["unit"]: s["reason"] for s in built.skipped}
  assert set(reasons) == {truncated, short, gone}
  assert "rows, needs 2816" in reasons[short] and reasons[gone] == "missing"
  assert len(dataset) == 9 and {truncated, short, gone}.isdisjoint(
    r["video_id"].decode() for r in stored
  )
  with pytest.raises(report.TooManyBadFilesError, match="25.0% of the units"):
    _build(root, tmp_path / "strict", max_bad_fraction=0.2)
