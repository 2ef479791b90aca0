"""Aff-Wild2, ABAW valence-arousal track: face clips from ``cropped_aligned`` and audio log-mels.

A *trial* is one annotation file ``<VA folder>/{Train_Set,Validation_Set}/<stem>.txt``,
where the VA folder is ``VA_Set`` (ABAW 2020-2021) or ``VA_Estimation_Challenge`` (ABAW3
onward): a header ``valence,arousal``, then one row per video frame; ``-5`` marks a frame
without a face or annotation. Row ``i`` (1-based) is the image
``cropped_aligned/<stem>/<iiiii>.jpg``; a missing image (face-detection miss) is
zero-filled, and the build report lists, per trial, how many annotated frames had none.
Annotated frames show a face, so a trial none of whose annotated frames has an image has
its crops elsewhere or named otherwise (e.g. ``.png``): it is skipped, not written as black
clips. A stem ``<video>_left`` / ``<video>_right`` is one of two people of the video
``<video>.mp4|.avi``: two subjects of one video. Each video's own frame rate is read from
its container (it is not a constant 30 fps).

An example is a clip of ``clip_length`` consecutive frames every ``clip_stride`` frames
(the last clip ends at the last frame): ``video`` ``[clip_length, S, S, 3]`` uint8;
``audio``, the video file's sound as ``n_mels`` log-mel energies of a ``window_s`` Hann
window centred on each frame's time, ``[clip_length, n_mels]``; ``y`` the mean
``(valence, arousal)`` of the clip's annotated frames; ``frame_targets`` ``[clip_length, 2]``
and ``frame_mask`` (False at ``-5``) for per-frame scoring; ``frame_numbers`` (1-based rows).
Frames marked ``-5`` are never in ``y``, and clips without an annotated frame are not
written: they are neither trained on nor scored.

Protocol: the official ``Validation_Set`` is the test split (the challenge's test labels are
withheld); validation trials are carved from ``Train_Set`` by the runner. The challenge
scores CCC per dimension over all annotated frames pooled, and so do the runs of
``experiments/configs/affwild2.py`` (``scoring = "frame"``:
:func:`mtpkd_jax.methods.evaluation.frame_scores`, trials as the sequences).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data.builders import base, files, media
from mtpkd_jax.data.builders.report import BadFile

ANNOTATION_FOLDERS = ("VA_Estimation_Challenge", "VA_Set")
SETS = {"Train_Set": 0, "Validation_Set": 2}  # Validation is evaluated as `test`.
VIDEO_FOLDERS = ("videos", "batch1", "batch2", "raw_video", "raw_videos", "new_vids")
VIDEO_SUFFIXES = (".mp4", ".avi")
HEADER = ("valence", "arousal")
INVALID = -5.0


@dataclasses.dataclass(eq=False)
class Affwild2Config(base.ManualConfig):
  """The Aff-Wild2 builder's settings.

  Attributes:
    clip_length: frames per clip.
    clip_stride: frames between clip starts.
    image_size: frames are resized to ``image_size`` x ``image_size`` (the crops are 112).
    audio_rate: the audio is resampled to this rate, Hz.
    window_s: the log-mel window, seconds.
    n_mels: mel bands.
  """

  clip_length: int = 8
  clip_stride: int = 8
  image_size: int = 112
  audio_rate: int = 16_000
  window_s: float = 0.064
  n_mels: int = 64

  @property
  def n_fft(self) -> int:
    """Samples per log-mel window."""
    return round(self.window_s * self.audio_rate)


class Affwild2(base.ManualBuilder):
  """Aff-Wild2 valence-arousal clips; see the module docstring."""

  name = "affwild2"
  builder_configs = {
    "va": Affwild2Config(name="va", description="ABAW valence-arousal, 8-frame clips.")
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
Aff-Wild2 is licensed: request it from the ABAW organisers
(https://ibug.doc.ic.ac.uk/resources/aff-wild2/). Unpack it so that the folder given as
`--manual_dir` holds, at most three levels down, the valence-arousal annotations
`VA_Estimation_Challenge/` (or `VA_Set/`) with `Train_Set/` and `Validation_Set/`,
`cropped_aligned/<stem>/<nnnnn>.jpg`, and the videos (`.mp4` / `.avi`) in `videos/` or
`batch1/` and `batch2/` (for the audio).
"""

  @classmethod
  def write_dummy(cls, root: Path, config: Affwild2Config) -> None:
    """Writes dummy files in Aff-Wild2's layout under ``root`` (for tests and smoke runs)."""
    from mtpkd_jax.data.builders.dummy import affwild2 as dummy

    dummy.write(root)

  def _check(self) -> None:
    c = self.builder_config
    if min(c.clip_length, c.clip_stride, c.image_size, c.n_mels, c.audio_rate) < 1:
      raise ValueError(
        f"{self.full_name}: `clip_length`, `clip_stride`, `image_size`, `n_mels` and "
        "`audio_rate` must be positive."
      )
    if c.n_fft < 2:
      raise ValueError(f"{self.full_name}: `window_s`={c.window_s} is under two audio samples.")

  def _scan(self, manual_dir: Path) -> base.Plan:
    self._check()
    config = self.builder_config
    annotations = files.find_dir(manual_dir, ANNOTATION_FOLDERS, depth=3)
    if annotations is None:
      raise self.missing(
        f"`{'/` or `'.join(ANNOTATION_FOLDERS)}/`", manual_dir, names=ANNOTATION_FOLDERS
      )
    sets = {s: files.find_dir(annotations, [s], depth=1) for s in SETS}
    if sets["Train_Set"] is None:
      raise self.missing("`Train_Set/` (<stem>.txt)", annotations, names=["Train_Set"])
    crops = files.find_dir(manual_dir, ["cropped_aligned"], depth=3)
    if crops is None:
      raise self.missing(
        "`cropped_aligned/` (<stem>/<nnnnn>.jpg)", manual_dir, names=["cropped_aligned"]
      )
    videos = self._videos(manual_dir)
    trials = sorted(
      (name, path) for name, folder in sets.items() if folder for path in folder.glob("*.txt")
    )
    stems = sorted(p.stem for _, p in trials)
    units = []
    for set_name, path in trials:
      video = _video_name(path.stem)
      load = self._loader(
        path, stems.index(path.stem), SETS[set_name], crops / path.stem, videos.get(video)
      )
      units.append((path.stem, load))
    size, length = config.image_size, config.clip_length
    modalities = (
      schema_lib.Modality("video", "video", (length, size, size, 3), "uint8"),
      schema_lib.Modality("audio", "sequence", (length, config.n_mels)),
    )
    schema = schema_lib.Schema(modalities, schema_lib.Task("regression", HEADER), True, True)
    extra = {
      "frame_targets": base.tensor((length, 2), np.float32),
      "frame_mask": base.tensor((length,), np.bool_),
      "frame_numbers": base.tensor((length,), np.int64),
    }
    return base.Plan(schema, units, extra)

  def _videos(self, manual_dir: Path) -> dict[str, Path]:
    """Video stem -> file, from the video folders (batch1/batch2 merged or not)."""
    found = {}
    for name in VIDEO_FOLDERS:
      folder = files.find_dir(manual_dir, [name], depth=2)
      for path in sorted(folder.rglob("*")) if folder else ():
        if path.suffix.lower() in VIDEO_SUFFIXES:
          found.setdefault(path.stem, path)
    if not found:
      searched = [f"`{n}/`" for n in VIDEO_FOLDERS]
      raise self.missing("the videos (.mp4 / .avi), for the audio", manual_dir, searched)
    return found

  def _loader(self, path, subject, split, crop_dir, video):
    config = self.builder_config

    def load(report):
      targets = _annotations(path)
      num, length = len(targets), config.clip_length
      if num < length:
        raise BadFile(path, f"has {num} frames, fewer than `clip_length`={length}")
      if video is None:
        raise BadFile(path, f"no video {_video_name(path.stem)}.mp4/.avi for the audio")
      if not crop_dir.is_dir():
        raise BadFile(crop_dir, "missing (the trial's cropped_aligned frames)")
      valid = np.all(targets != INVALID, axis=1)
      crops = {p.name for p in files.entries(crop_dir)}
      cropless = valid & ~np.array([f"{i:05d}.jpg" in crops for i in range(1, num + 1)])
      annotated, missed = int(valid.sum()), int(cropless.sum())
      if annotated and missed == annotated:
        seen = f"; it holds {len(crops)} entries, e.g. {min(crops)}" if crops else ""
        raise BadFile(
          crop_dir,
          f"none of the {annotated} annotated frames has its crop <nnnnn>.jpg (5-digit, "
          f"1-based frame number: 00001.jpg to {num:05d}.jpg){seen}",
        )
      rate = media.video_rate(video)
      mels = media.log_mel(
        media.audio(video, config.audio_rate),
        config.audio_rate,
        np.arange(num) / rate,
        config.n_fft,
        config.n_mels,
      )
      if missed:
        report.repair(
          path.stem,
          crop_dir,
          f"no crop for {missed} of the {annotated} annotated frames (face-detection "
          "misses); zero-filled",
        )
      for start in media.window_starts(num, length, config.clip_stride):
        frames = np.arange(start, start + length)
        if not valid[frames].any():
          continue
        yield {
          "video": np.stack([self._frame(crop_dir, i + 1, report, path.stem) for i in frames]),
          "audio": mels[frames],
          "y": targets[frames][valid[frames]].mean(axis=0).astype(np.float32),
          "frame_targets": targets[frames].astype(np.float32),
          "frame_mask": valid[frames],
          "frame_numbers": frames + 1,
          "subject": np.int64(subject),
          "split": np.int64(split),
          "subject_name": path.stem,
          "video_id": _video_name(path.stem),
        }

    return load

  def _frame(self, crop_dir: Path, number: int, report, unit: str) -> np.ndarray:
    """Frame ``number`` (1-based) of a trial; zeros where the face was not detected."""
    size = (self.builder_config.image_size,) * 2
    path = crop_dir / f"{number:05d}.jpg"
    if not path.is_file():
      return np.zeros((*size, 3), np.uint8)
    try:
      return media.image(path, size)
    except BadFile as error:
      report.repair(unit, path, f"{error.reason}; zero-filled")
      return np.zeros((*size, 3), np.uint8)


def _video_name(stem: str) -> str:
  """The video of an annotation stem: ``_left`` / ``_right`` name one of its two people."""
  for side in ("_left", "_right"):
    if stem.endswith(side):
      return stem.removesuffix(side)
  return stem


def _annotations(path: Path) -> np.ndarray:
  """``[frames, 2]`` valence and arousal of an annotation file, ``-5`` where not annotated."""
  try:
    lines = path.read_text().split()
  except (OSError, UnicodeDecodeError) as error:
    raise BadFile(path, f"unreadable ({error})") from None
  if not lines or tuple(n.strip().lower() for n in lines[0].split(",")) != HEADER:
    raise BadFile(path, f"expected the header 'valence,arousal', got {lines[:1]}")
  try:
    values = np.array([[float(v) for v in line.split(",")] for line in lines[1:]], np.float64)
  except ValueError as error:
    raise BadFile(path, f"unparsable row ({error})") from None
  if values.ndim != 2 or values.shape[1:] != (2,) or not len(values):
    raise BadFile(path, "expected rows of two comma-separated values")
  if bad := int(np.sum(((values < -1) | (values > 1)) & (values != INVALID))):
    raise BadFile(path, f"{bad} values outside [-1, 1] that are not -5")
  return values
