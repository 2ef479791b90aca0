"""The BioVid Heat Pain Database, Part A and Part B: face video and biosignals per sample.

A sample (``<subject>-<class>-<nnn>``, 5.5 s) has a video ``video/<subject>/<sample>.mp4``
and biosignals ``biosignals_filtered/<subject>/<sample>_bio.csv`` (or ``biosignals_raw``):
tab-separated, a header ``time gsr ecg emg_trapezius [emg_corrugator emg_zygomaticus]``,
2816 rows at 512 Hz. An example holds ``video``: ``num_frames`` frames taken evenly from
frames ``frame_window`` (inclusive; default 10 from 50-70, the stimulus peak), decoded with
PyAV and resized to ``image_size`` squared; ``physio``: the ``channels`` (read by header
name) between ``signal_window`` seconds; ``y``: the class; ``pain_level`` (0 = BL1 .. 4 =
PA4), ``subject``, ``subject_name`` and ``video_id`` (the sample name).

Samples come from ``samples.csv`` (tab-separated; at the part's root or under
``starting_point/``) when it is there, otherwise from the video file names (hidden files
such as macOS's ``._<sample>.mp4`` are not samples; a video whose name is not its
subject's ``<subject>-<BL1|PA1..PA4>-<nnn>`` is skipped and listed).

Protocol: no official split. ``experiments/configs/biovid.py`` runs k folds by subject or
leave-one-subject-out (``num_folds`` = the number of subjects), validation subjects carved
from each fold's training subjects (:func:`mtpkd_jax.data.splits.subject_folds`).
"""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

import numpy as np

from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data.builders import base, files, media
from mtpkd_jax.data.builders.biovid_layout import CHANNELS, LEVELS, RATE
from mtpkd_jax.data.builders.report import BadFile

SAMPLE = re.compile(r"(?P<subject>[^-]+)-(?P<level>BL1|PA[1-4])-\d{3}")


@dataclasses.dataclass(eq=False)
class BiovidConfig(base.ManualConfig):
  """The BioVid builder's settings.

  Attributes:
    part: ``"a"`` or ``"b"``.
    classes: the pain levels kept, in class order (e.g. ``("BL1", "PA4")``).
    num_frames: frames per clip, taken evenly from ``frame_window``.
    frame_window: first and last frame (0-based, inclusive) to sample from.
    image_size: frames are resized to ``image_size`` x ``image_size``.
    signals: ``"filtered"`` (``biosignals_filtered``) or ``"raw"`` (``biosignals_raw``).
    channels: biosignal columns kept; ``()`` for the part's (``CHANNELS``).
    signal_window: ``(start, stop)`` seconds of the biosignals kept.
  """

  part: str = "a"
  classes: tuple[str, ...] = ("BL1", "PA4")
  num_frames: int = 10
  frame_window: tuple[int, int] = (50, 70)
  image_size: int = 112
  signals: str = "filtered"
  channels: tuple[str, ...] = ()
  signal_window: tuple[float, float] = (0.0, 5.5)

  @property
  def channel_names(self) -> tuple[str, ...]:
    """The biosignal columns kept, in order."""
    return tuple(self.channels) or CHANNELS[self.part]

  @property
  def frame_indices(self) -> np.ndarray:
    """The frames of a clip: ``num_frames`` indices spread evenly over ``frame_window``."""
    first, last = self.frame_window
    return np.round(np.linspace(first, last, self.num_frames)).astype(np.int64)

  @property
  def signal_rows(self) -> tuple[int, int]:
    """``signal_window`` in rows of the biosignal files: ``(start, stop)``."""
    return round(self.signal_window[0] * RATE), round(self.signal_window[1] * RATE)


def _config(part: str, classes: tuple[str, ...]) -> BiovidConfig:
  label = "binary" if len(classes) == 2 else "5class"
  return BiovidConfig(
    name=f"part_{part}_{label}",
    part=part,
    classes=classes,
    description=f"BioVid Part {part.upper()}, {' vs '.join(classes)}.",
  )


class Biovid(base.ManualBuilder):
  """BioVid Heat Pain Part A / B samples; see the module docstring."""

  name = "biovid"
  builder_configs = {
    c.name: c for p in ("a", "b") for c in (_config(p, ("BL1", "PA4")), _config(p, LEVELS))
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
The BioVid Heat Pain Database is licensed: request it at http://www.iikt.ovgu.de/BioVid.html.
Unpack Part A (or B) so that the folder given as `--manual_dir` holds, at most two levels
down, `PartA/` (or `PartB/`; any case) with `video/<subject>/<sample>.mp4`,
`biosignals_filtered/<subject>/<sample>_bio.csv` (or `biosignals_raw/`) and `samples.csv`
(or `starting_point/samples.csv`). A folder doubled by unzipping (`video/video/`) is fine.
"""

  @classmethod
  def write_dummy(cls, root: Path, config: BiovidConfig) -> None:
    """Writes dummy files in BioVid's layout under ``root`` (for tests and smoke runs)."""
    from mtpkd_jax.data.builders.dummy import biovid as dummy

    dummy.write(root, part=config.part, classes=config.classes)

  def _check(self) -> None:
    config = self.builder_config
    first, last = config.frame_window
    start, stop = config.signal_rows
    problems = [
      config.part not in CHANNELS and f"`part` must be 'a' or 'b', got {config.part!r}",
      not set(config.classes) <= set(LEVELS) and f"`classes` must be among {LEVELS}",
      len(config.classes) < 2 and "`classes` needs two levels or more",
      not 0 <= first <= last and f"`frame_window` must be 0 <= first <= last, got {first, last}",
      config.num_frames < 1 and "`num_frames` must be positive",
      config.signals not in ("filtered", "raw") and "`signals` must be 'filtered' or 'raw'",
      not 0 <= start < stop and f"`signal_window` must be 0 <= start < stop, got {start, stop}",
    ]
    if problems := [p for p in problems if p]:
      raise ValueError(f"{self.full_name}: " + "; ".join(problems) + ".")

  def _scan(self, manual_dir: Path) -> base.Plan:
    self._check()
    config = self.builder_config
    part_name = f"Part{config.part.upper()}"
    part_names = [part_name, f"Part_{config.part.upper()}"]
    part = files.find_dir(manual_dir, part_names, depth=2)
    if part is None:
      if files.find_dir(manual_dir, ["video"], depth=1) is None:
        raise self.missing(f"`{part_name}/` with `video/`", manual_dir, names=part_names)
      part = manual_dir
    video_dir = files.find_dir(part, ["video"], depth=1)
    if video_dir is None:
      raise self.missing("`video/` (<subject>/<sample>.mp4)", part, names=["video"])
    signals = f"biosignals_{config.signals}"
    signal_dir = files.find_dir(part, [signals], depth=1)
    if signal_dir is None:
      raise self.missing(f"`{signals}/` (<subject>/<sample>_bio.csv)", part, names=[signals])
    samples, misnamed = self._samples(part, video_dir)
    kept = [s for s in samples if s[2] in config.classes]
    if not kept:
      raise self.missing(f"samples of the classes {config.classes}", part)
    size = config.image_size
    modalities = (
      schema_lib.Modality("video", "video", (config.num_frames, size, size, 3), "uint8"),
      schema_lib.Modality(
        "physio",
        "signal",
        (config.signal_rows[1] - config.signal_rows[0], len(config.channel_names)),
      ),
    )
    schema = schema_lib.Schema(modalities, schema_lib.Task("classification", tuple(config.classes)))
    units = [
      (
        sample,
        self._loader(
          sample,
          subject_id,
          subject,
          level,
          video_dir / subject / f"{sample}.mp4",
          signal_dir / subject / f"{sample}_bio.csv",
        ),
      )
      for subject_id, subject, level, sample in kept
    ]
    units += [(Path(error.path).stem, _skipped(error)) for error in misnamed]
    return base.Plan(schema, units, {"pain_level": base.tensor((), np.int64)})

  def _samples(
    self, part: Path, video_dir: Path
  ) -> tuple[list[tuple[int, str, str, str]], list[BadFile]]:
    """The samples and the videos not named as samples.

    Returns:
      ``(subject id, subject name, level, sample name)`` of every sample, in order; and the
      verdicts on the videos whose name is not a sample's (only without ``samples.csv``, when
      the names are the index).
    """
    index = files.find_file(part, ["samples.csv"], depth=2)
    if index is None:
      named, misnamed = [], []
      for folder in (f for f in files.entries(video_dir) if f.is_dir()):
        for video in (v for v in files.entries(folder) if v.suffix == ".mp4"):
          match = SAMPLE.fullmatch(video.stem)
          if match and match["subject"] == folder.name:
            named.append((folder.name, match["level"], video.stem))
          else:
            expected = f"`{folder.name}-<BL1|PA1..PA4>-<nnn>.mp4` (nnn: 3 digits)"
            misnamed.append(BadFile(video, f"not a sample's name: expected {expected}"))
      subjects = sorted({subject for subject, _, _ in named})
      samples = [(subjects.index(n[0]), *n) for n in sorted(named, key=lambda n: n[2])]
      return samples, misnamed
    with open(index, newline="") as f:
      rows = list(csv.DictReader(f, delimiter="\t"))
    needed = {"subject_id", "subject_name", "class_id", "sample_name"}
    if not rows or not needed <= set(rows[0]):
      raise ValueError(
        f"{index}: expected a tab-separated header with {sorted(needed)}, got "
        f"{sorted(rows[0]) if rows else 'no rows'}."
      )
    return [
      (int(r["subject_id"]), r["subject_name"], LEVELS[int(r["class_id"])], r["sample_name"])
      for r in rows
    ], []

  def _loader(self, sample, subject_id, subject, level, video_path, signal_path):
    config = self.builder_config

    def load(report):
      del report
      size = (config.image_size, config.image_size)
      if not video_path.is_file():
        raise BadFile(video_path, "missing")
      video = media.video_frames(video_path, config.frame_indices, size)
      physio = _signals(signal_path, config.channel_names, *config.signal_rows)
      return [
        {
          "video": video,
          "physio": physio,
          "y": np.int64(config.classes.index(level)),
          "pain_level": np.int64(LEVELS.index(level)),
          "subject": np.int64(subject_id),
          "subject_name": subject,
          "video_id": sample,
        }
      ]

    return load


def _skipped(error: BadFile):
  """The loader of a unit that is skipped for ``error``."""

  def load(report):
    del report
    raise error

  return load


def _signals(path: Path, channels: tuple[str, ...], start: int, stop: int) -> np.ndarray:
  """Rows ``start:stop`` of the named columns of a ``*_bio.csv``: float32 ``[rows, channels]``."""
  if not path.is_file():
    raise BadFile(path, "missing")
  try:
    with open(path) as f:
      header = f.readline().strip().split("\t")
      values = np.loadtxt(f, delimiter="\t", ndmin=2, dtype=np.float64)
  except (OSError, ValueError) as error:
    raise BadFile(path, f"unreadable biosignals ({error})") from None
  if missing := [c for c in (*channels, "time") if c not in header]:
    raise BadFile(path, f"has no column {missing} (header {header})")
  if values.shape[1] != len(header):
    raise BadFile(path, f"has {values.shape[1]} columns, the header {len(header)}")
  if len(values) < stop:
    raise BadFile(path, f"has {len(values)} rows, needs {stop} (the signal window)")
  step = np.median(np.diff(values[:, header.index("time")]))
  if not abs(step - 1e6 / RATE) < 0.02 * 1e6 / RATE:
    raise BadFile(path, f"time steps of {step:.0f} us, expected {1e6 / RATE:.1f} ({RATE} Hz)")
  if not np.all(np.isfinite(values[start:stop])):
    raise BadFile(path, "holds non-finite values")
  return values[start:stop, [header.index(c) for c in channels]].astype(np.float32)
