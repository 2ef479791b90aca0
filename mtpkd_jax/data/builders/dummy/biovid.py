"""Dummy BioVid Part A / B files: tiny mp4 videos, ``*_bio.csv`` biosignals and ``samples.csv``.

Names and formats follow the release: subjects ``<6 digits>_<m|w>_<age>``, samples
``<subject>-<class>-<nnn>`` (BL1 numbered 081-100 after the pain samples), tab-separated
``samples.csv`` with ``subject_id subject_name class_id class_name sample_id sample_name``,
tab-separated biosignals with a ``time`` column in microseconds at 512 Hz and 2816 rows.
Videos are tiny (``width`` x ``height``, 25 fps, ``frames`` frames); brightness and
skin conductance rise with the pain level, so models can learn from both.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from mtpkd_jax.data.builders import biovid_layout

ROWS = 2816


def write_video(
  path: Path, frames: np.ndarray, rate: int = 25, keyframe_every: int | None = None
) -> None:
  """Writes uint8 frames ``[T, H, W, 3]`` (even H, W) as an MPEG-4 video with PyAV.

  Args:
    path: the file to write.
    frames: the frames.
    rate: frames per second.
    keyframe_every: frames from one keyframe to the next (the encoder's GOP size); ``None``
      for the encoder's default.
  """
  path.parent.mkdir(parents=True, exist_ok=True)
  with av.open(str(path), "w") as container:
    stream = container.add_stream("mpeg4", rate=rate)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p"
    if keyframe_every is not None:
      stream.codec_context.gop_size = keyframe_every
    for frame in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode(None))


def _biosignals(path: Path, level: int, channels: int, rng, rows: int = ROWS) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  time = 1250 + np.floor(np.arange(rows) * 1e6 / biovid_layout.RATE).astype(np.int64)
  values = rng.normal(0, 1, (rows, 5))
  values[:, 0] += level * np.linspace(0, 2, rows)  # GSR rises with pain.
  values[:, 3 if channels == 5 else 1] += level * 0.5
  header = "\t".join(["time", *biovid_layout.CHANNELS["b"]])
  lines = [header] + [
    "\t".join([str(t), *(f"{v:.4f}" for v in row)]) for t, row in zip(time, values, strict=True)
  ]
  path.write_text("\n".join(lines) + "\n")


def write(
  root: Path,
  *,
  part: str = "a",
  classes: tuple[str, ...] = ("BL1", "PA4"),
  subjects: int = 6,
  samples_per_class: int = 4,
  frames: int = 72,
  width: int = 32,
  height: int = 24,
  samples_csv: str = "starting_point",
  nest: bool = False,
  seed: int = 0,
) -> list[tuple[str, str, str]]:
  """Writes ``Part<X>/`` under ``root``.

  Args:
    root: the manual folder.
    part: ``"a"`` or ``"b"``.
    classes: the levels written.
    subjects: number of subjects.
    samples_per_class: samples per subject and level.
    frames: frames per video (the release has 138; the default window needs 71).
    width: video width (the release: 1388).
    height: video height (the release: 1038).
    samples_csv: ``"root"``, ``"starting_point"`` or ``""`` (no index file).
    nest: unzipped twice: ``video/video/`` and ``biosignals_filtered/biosignals_filtered/``.
    seed: the random seed.

  Returns:
    ``(subject, level, sample)`` of every sample written.
  """
  rng = np.random.default_rng(seed)
  part_dir = Path(root) / f"Part{part.upper()}"
  double = (lambda name: Path(name) / name) if nest else Path
  written, rows = [], ["subject_id\tsubject_name\tclass_id\tclass_name\tsample_id\tsample_name"]
  for s in range(subjects):
    subject = f"{71309 + 1111 * s:06d}_{'mw'[s % 2]}_{21 + s}"
    numbers = iter(range(1, 81))
    for level in classes:
      for k in range(samples_per_class):
        number = 81 + k if level == "BL1" else next(numbers)
        sample = f"{subject}-{level}-{number:03d}"
        pain = biovid_layout.LEVELS.index(level)
        pixels = rng.integers(0, 60, (frames, height, width, 3)) + 40 * pain
        write_video(part_dir / double("video") / subject / f"{sample}.mp4", pixels.astype(np.uint8))
        for kind in ("filtered", "raw"):
          name = f"biosignals_{kind}"
          _biosignals(
            part_dir / double(name) / subject / f"{sample}_bio.csv",
            pain,
            3 if part == "a" else 5,
            rng,
          )
        rows.append(f"{s + 1}\t{subject}\t{pain}\t{level}\t{len(written)}\t{sample}")
        written.append((subject, level, sample))
  if samples_csv:
    index = part_dir / ("samples.csv" if samples_csv == "root" else "starting_point/samples.csv")
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text("\n".join(rows) + "\n")
  return written
