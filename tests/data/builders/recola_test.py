"""RECOLA (AVEC 2016) built from dummy files in the release layout and read back."""

import json

import numpy as np
import pytest

from mtpkd_jax.data import pipeline
from mtpkd_jax.data.builders import files, report
from mtpkd_jax.data.builders.dummy import recola as dummy

OPTIONS = {"window": 20, "stride": 15, "modalities": ("audio", "ecg")}


def _gold(root, recording, dimension="arousal"):
  """The gold standard, read independently: the last comma-separated value of each data row."""
  lines = (root / "ratings_gold_standard" / dimension / f"{recording}.arff").read_text()
  rows = lines.split("@data")[1].split()
  return np.array([float(r.split(",")[-1]) for r in rows], np.float32)


def _features(root, folder, recording, dimension="arousal"):
  """A feature file, read independently: ``{frame time in ms: row}``.

  A row holds the numeric attributes other than ``frameTime``, in the header's order.
  """
  path = root / folder / dimension / f"{recording}.arff"
  header, data = path.read_text().split("@data")
  attributes = [line.split()[1:3] for line in header.splitlines() if line.startswith("@attribute")]
  time = [name for name, _ in attributes].index("frameTime")
  kept = [i for i, (name, kind) in enumerate(attributes) if kind == "numeric" and i != time]
  rows = [row.split(",") for row in data.split()]
  return {round(float(r[time]) * 1000): np.float32([r[i] for i in kept]) for r in rows}


def _expected_features(root, record, folder):
  """The feature rows at a window's frame times, from the ARFF file."""
  rows = _features(root, folder, record["subject_name"].decode())
  return np.stack([rows[round(float(t) * 1000)] for t in record["frame_times"]])


def _build_and_open(root, tmp_path, options):
  """Builds from ``root`` (the manual folder), then opens the build as training does."""
  options = {**OPTIONS, **options}
  builder = pipeline.builder("recola/arousal", str(tmp_path / "tfds"), options, str(root))
  built = builder.download_and_prepare()
  dataset = pipeline.open_dataset("recola/arousal", str(tmp_path / "tfds"), options)
  return dataset, built, builder


def test_windows_targets_ids_and_splits(tmp_path):
  root = tmp_path / "manual"
  ids = dummy.write(root, recordings=2, frames=50)
  dataset, built, builder = _build_and_open(root, tmp_path, {})
  # 50 frames, windows of 20 every 15: starts 0, 15, 30 (the last ends at frame 50).
  assert len(dataset) == len(ids) * 3 and built.skipped == []
  assert dataset.schema.modality("audio").shape == (20, 88)
  assert dataset.schema.modality("ecg").shape == (20, 19)
  assert dataset.schema.task.names == ("arousal",)
  stored = builder.as_data_source("train").__getitems__(range(len(dataset)))
  by_index = sorted(stored, key=lambda r: r["index"])
  columns = dataset.table.take(np.arange(len(dataset)))
  for i, record in enumerate(by_index):
    recording = record["subject_name"].decode()
    assert record["video_id"].decode() == recording
    start = round(float(record["frame_times"][0]) / 0.04)
    gold = _gold(root, recording)[start : start + 20]
    np.testing.assert_allclose(record["frame_targets"], gold, atol=1e-6)
    np.testing.assert_allclose(columns["y"][i], [gold.mean()], atol=1e-6)
    for modality, folder in (("audio", "features_audio"), ("ecg", "features_ECG")):
      expected = _expected_features(root, record, folder)
      np.testing.assert_allclose(columns[modality][i], expected, atol=1e-6)
    assert columns["split"][i] == (2 if recording.startswith("dev") else 0)
  assert sorted({r["subject_name"].decode() for r in by_index}) == sorted(ids)
  assert len(set(dataset.subject.tolist())) == len(ids)


def test_features_are_read_by_header_and_aligned_on_frame_time(tmp_path):
  root = tmp_path / "manual"
  dummy.write(root, recordings=1, frames=40)
  reference, _, _ = _build_and_open(root, tmp_path / "a", {})
  path = root / "features_audio" / "arousal" / "train_1.arff"
  header, data = path.read_text().split("@data")
  rows = data.split()
  # Another release's identifiers: no Instance_name, frameTime last; rows out of order.
  header = header.replace("@attribute Instance_name string\n", "")
  header = header.replace("@attribute frameTime numeric\n", "") + "@attribute frameTime numeric\n"
  moved = [",".join([*r.split(",")[2:], r.split(",")[1]]) for r in rows[::-1]]
  path.write_text(header + "@data\n" + "\n".join(moved) + "\n")
  changed, _, _ = _build_and_open(root, tmp_path / "b", {})
  keys = np.arange(len(reference))
  np.testing.assert_array_equal(
    reference.table.take(keys)["audio"], changed.table.take(keys)["audio"]
  )


@pytest.mark.parametrize("layout,nest", [("avec2015", ""), ("avec2016", "RECOLA_2016/AVEC2016")])
def test_layout_variations(tmp_path, layout, nest):
  root = tmp_path / "manual"
  ids = dummy.write(root, recordings=1, frames=40, layout=layout, nest=nest)
  dataset, _, _ = _build_and_open(root, tmp_path, {})
  assert len(dataset) == len(ids) * 3  # starts 0, 15, 20


def test_label_delay_pairs_features_with_later_labels(tmp_path):
  root = tmp_path / "manual"
  dummy.write(root, recordings=1, frames=40)
  dataset, _, builder = _build_and_open(root, tmp_path, {"label_delay": 5, "stride": 100})
  record = min(
    builder.as_data_source("train").__getitems__(range(len(dataset))), key=lambda r: r["index"]
  )
  gold = _gold(root, record["subject_name"].decode())
  np.testing.assert_allclose(record["frame_targets"], gold[5:25], atol=1e-6)
  np.testing.assert_allclose(record["frame_times"], np.arange(20) * 0.04, atol=1e-6)
  expected = _expected_features(root, record, "features_audio")  # Frames 0-19.
  np.testing.assert_allclose(record["audio"], expected, atol=1e-6)


def test_missing_gold_standard_names_what_and_where(tmp_path):
  (tmp_path / "manual" / "features_audio").mkdir(parents=True)
  builder = pipeline.builder("recola/arousal", str(tmp_path), OPTIONS, str(tmp_path / "manual"))
  with pytest.raises(
    files.MissingFilesError, match=r"(?s)`ratings_gold_standard/`.*manual.*RECOLA"
  ):
    builder.download_and_prepare()


def test_a_truncated_feature_file_skips_its_recording_and_too_many_fail(tmp_path):
  root = tmp_path / "manual"
  dummy.write(root, recordings=2, frames=40)
  path = root / "features_ECG" / "arousal" / "dev_2.arff"
  path.write_text(path.read_text()[: len(path.read_text()) // 2].rsplit("\n", 1)[0])
  dataset, built, builder = _build_and_open(root, tmp_path / "a", {"max_bad_fraction": 0.3})
  assert [s["unit"] for s in built.skipped] == ["dev_2"]
  assert "covers" in built.skipped[0]["reason"] or "values" in built.skipped[0]["reason"]
  assert len(dataset) == 3 * 3
  assert json.loads(builder.report_path.read_text())["skipped"][0]["path"] == str(path)
  strict = pipeline.builder("recola/arousal", str(tmp_path / "b"), OPTIONS, str(root))
  with pytest.raises(report.TooManyBadFilesError, match="dev_2"):
    strict.download_and_prepare()
  assert not (tmp_path / "b" / "recola" / strict.builder_config.name / "1.0.0").exists()
