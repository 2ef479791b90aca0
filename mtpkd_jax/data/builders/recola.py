"""RECOLA as released for AVEC 2016: per-recording feature sequences and the gold standard.

Each recording (``train_1..9``, ``dev_1..9``; ``test_*`` has no public gold standard and is
left out) is a 5-minute session with one row every 40 ms. The feature ARFFs of each modality
and the gold standard are read by their headers (numeric attributes other than
``frameTime`` are features), aligned on ``frameTime`` and cut into windows of ``window``
frames every ``stride`` frames (the last window ends at the last frame). An example is a
window: each modality a sequence ``[window, d]``, ``y`` the window's mean gold standard, and
the per-frame gold standard in ``frame_targets`` (with ``frame_times``, seconds), for
per-frame scoring.

Protocol: the ``dev`` recordings are the test split (evaluated once); validation recordings
are carved from the training ones (``config.val_subjects``); recordings are the subjects
(one participant each). The AVEC metric is CCC per dimension on dev.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data.builders import arff, base, files, media
from mtpkd_jax.data.builders.report import BadFile

# Modality name -> feature folder, in the AVEC 2016 release.
FOLDERS = {
  "audio": "features_audio",
  "video_appearance": "features_video_appearance",
  "video_geometric": "features_video_geometric",
  "ecg": "features_ECG",
  "hrhrv": "features_HRHRV",
  "eda": "features_EDA",
  "scl": "features_SCL",
  "scr": "features_SCR",
}
DIMENSIONS = ("arousal", "valence")
PARTITIONS = {"train": 0, "dev": 2}  # dev is evaluated as `test` (schema.SPLITS codes).
_ID = re.compile(r"^(train|dev)_(\d+)$")


@dataclasses.dataclass(eq=False)
class RecolaConfig(base.ManualConfig):
  """The RECOLA builder's settings.

  Attributes:
    dimension: the target, ``arousal`` or ``valence`` (its feature folders are used).
    modalities: the feature sets, keys of ``FOLDERS``.
    window: frames per example (40 ms each).
    stride: frames between window starts.
    label_delay: frames the gold standard lags the features by (annotators' reaction time):
      features at frame ``t`` are paired with the gold standard at ``t + label_delay``.
  """

  dimension: str = "arousal"
  modalities: tuple[str, ...] = ("audio", "video_appearance", "video_geometric", "ecg", "hrhrv")
  window: int = 100
  stride: int = 50
  label_delay: int = 0


class Recola(base.ManualBuilder):
  """RECOLA (AVEC 2016) feature windows; see the module docstring."""

  name = "recola"
  builder_configs = {
    d: RecolaConfig(name=d, dimension=d, description=f"AVEC 2016 {d}, 4 s windows every 2 s.")
    for d in DIMENSIONS
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
RECOLA (AVEC 2016 emotion sub-challenge) is licensed: request it from the RECOLA / AVEC 2016
organisers (https://diuf.unifr.ch/main/diva/recola/). Unpack it so that the folder given as
`--manual_dir` holds (at most two levels down) `ratings_gold_standard/{arousal,valence}/
{train,dev}_<k>.arff` and the feature folders `features_audio/`, `features_video_appearance/`,
`features_video_geometric/`, `features_ECG/`, `features_HRHRV/` (each with `arousal/` and
`valence/` subfolders; the AVEC 2015 layout without them is accepted too).
"""

  @classmethod
  def write_dummy(cls, root: Path, config: RecolaConfig) -> None:
    """Writes dummy files in RECOLA's layout under ``root`` (for tests and smoke runs)."""
    from mtpkd_jax.data.builders.dummy import recola as dummy

    dummy.write(root)

  def _scan(self, manual_dir: Path) -> base.Plan:
    config = self.builder_config
    if config.dimension not in DIMENSIONS:
      raise ValueError(f"`dimension` must be one of {DIMENSIONS}, got {config.dimension!r}.")
    if not config.modalities or not set(config.modalities) <= set(FOLDERS):
      raise ValueError(f"`modalities` must be among {list(FOLDERS)}, got {config.modalities}.")
    if config.window < 1 or config.stride < 1 or config.label_delay < 0:
      raise ValueError("`window` and `stride` must be positive and `label_delay` >= 0.")
    gold = files.find_dir(manual_dir, ["ratings_gold_standard"], depth=3)
    if gold is None:
      raise self.missing("`ratings_gold_standard/`", manual_dir, names=["ratings_gold_standard"])
    gold_dir = files.find_dir(gold, [config.dimension], depth=1)
    if gold_dir is None:
      raise self.missing(
        f"`{config.dimension}/` (the gold standard)", gold, names=[config.dimension]
      )
    ids = sorted(
      (m.group(1), int(m.group(2))) for p in gold_dir.glob("*.arff") if (m := _ID.match(p.stem))
    )
    if not ids:
      raise self.missing("train_<k>.arff / dev_<k>.arff gold-standard files", gold_dir)
    feature_dirs = {m: self._feature_dir(gold.parent, m) for m in config.modalities}
    dims = {m: self._dimension(d, ids) for m, d in feature_dirs.items()}
    modalities = tuple(
      schema_lib.Modality(m, "sequence", (config.window, dims[m])) for m in config.modalities
    )
    schema = schema_lib.Schema(
      modalities, schema_lib.Task("regression", (config.dimension,)), True, True
    )
    units = []
    for subject, (partition, k) in enumerate(ids):
      recording = f"{partition}_{k}"
      paths = {m: d / f"{recording}.arff" for m, d in feature_dirs.items()}
      units.append(
        (recording, self._loader(recording, subject, gold_dir / f"{recording}.arff", paths, dims))
      )
    extra = {
      "frame_targets": base.tensor((config.window,), np.float32),
      "frame_times": base.tensor((config.window,), np.float32),
    }
    return base.Plan(schema, units, extra)

  def _feature_dir(self, root: Path, modality: str) -> Path:
    """``features_<m>/<dimension>/`` (AVEC 2016), or ``features_<m>/`` itself (AVEC 2015)."""
    folder = files.find_dir(root, [FOLDERS[modality]], depth=1)
    if folder is None:
      raise self.missing(
        f"`{FOLDERS[modality]}/` (modality {modality!r})", root, names=[FOLDERS[modality]]
      )
    return files.find_dir(folder, [self.builder_config.dimension], depth=1) or folder

  def _dimension(self, folder: Path, ids) -> int:
    """Feature count of a modality, from the header of its first readable file."""
    for partition, k in ids:
      path = folder / f"{partition}_{k}.arff"
      if path.is_file():
        try:
          return len(_feature_names(arff.read(path)))
        except BadFile:
          continue
    raise self.missing("a readable <recording>.arff feature file", folder)

  def _loader(self, recording, subject, gold_path, paths, dims):
    config = self.builder_config

    def load(report):
      del report
      gold = _read(gold_path, gold=True)
      features = {}
      for modality, path in paths.items():
        times, values = _read(path, gold=False)
        if values.shape[1] != dims[modality]:
          raise BadFile(path, f"has {values.shape[1]} features, the others {dims[modality]}")
        features[modality] = _align(path, gold[0], times, values)
      frame_times, target = gold[0], gold[1][:, 0]
      if config.label_delay:
        frame_times, target = frame_times[: -config.label_delay], target[config.label_delay :]
        features = {m: v[: -config.label_delay] for m, v in features.items()}
      num = len(target)
      if num < config.window:
        raise BadFile(gold_path, f"has {num} frames, fewer than `window`={config.window}")
      partition = recording.split("_")[0]
      for start in media.window_starts(num, config.window, config.stride):
        frames = slice(start, start + config.window)
        yield {
          **{m: v[frames].astype(np.float32) for m, v in features.items()},
          "y": np.float32([target[frames].mean()]),
          "frame_targets": target[frames].astype(np.float32),
          "frame_times": frame_times[frames].astype(np.float32),
          "subject": np.int64(subject),
          "split": np.int64(PARTITIONS[partition]),
          "subject_name": recording,
          "video_id": recording,
        }

    return load


def _feature_names(table: arff.Arff) -> tuple[str, ...]:
  return tuple(n for n in table.numeric_names if n.lower() != "frametime")


def _read(path: Path, gold: bool) -> tuple[np.ndarray, np.ndarray]:
  """``(frame times [rows] or None, values [rows, d])`` of a feature or gold-standard file."""
  if not path.is_file():
    raise BadFile(path, "missing")
  table = arff.read(path)
  names = _feature_names(table)
  if gold and len(names) != 1:
    raise BadFile(path, f"expected one gold-standard attribute besides frameTime, got {names}")
  values = np.stack([table.column(n) for n in names], axis=1) if names else None
  if values is None or not len(values):
    raise BadFile(path, "no numeric feature rows")
  if not np.all(np.isfinite(values)):
    raise BadFile(path, "holds missing (?) or non-finite values")
  times = table.column("frameTime")
  if gold and times is None:
    raise BadFile(path, "the gold standard has no frameTime attribute")
  return times, values


def _align(path: Path, gold_times: np.ndarray, times: np.ndarray | None, values: np.ndarray):
  """Rows of ``values`` at the gold standard's frame times (40 ms grid, matched to 1 ms)."""
  if times is None:  # No frameTime attribute: rows must be the gold standard's frames.
    if len(values) < len(gold_times):
      raise BadFile(path, f"has {len(values)} rows and no frameTime; gold has {len(gold_times)}")
    return values[: len(gold_times)]
  keys = np.round(times * 1000).astype(np.int64)
  wanted = np.round(gold_times * 1000).astype(np.int64)
  order = np.argsort(keys, kind="stable")
  found = np.searchsorted(keys[order], wanted).clip(0, len(keys) - 1)
  hit = keys[order][found] == wanted
  if not hit.all():
    raise BadFile(path, f"covers {int(hit.sum())} of the gold standard's {len(wanted)} frames")
  return values[order][found]
