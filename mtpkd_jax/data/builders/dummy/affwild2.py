"""Dummy Aff-Wild2 (VA track) files: annotations, cropped_aligned JPEGs, videos with audio.

Names follow the release: videos ``<id>-<fps>-<W>x<H>`` in ``batch1/`` and ``batch2/``, one
with two people (``_left`` / ``_right`` annotation files), annotations with the header
``valence,arousal`` and ``-5`` rows, 5-digit 1-based frame images (some missing).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

VIDEOS = {"1-30-1280x720": (), "5-25-1920x1080-1": ("_left", "_right"), "10-30-640x360": ()}


def _video(path: Path, frames: int, rate: int, audio_rate: int = 16_000) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with av.open(str(path), "w") as container:
    video = container.add_stream("mpeg4", rate=rate)
    video.height = video.width = 16
    video.pix_fmt = "yuv420p"
    sound = container.add_stream("aac", rate=audio_rate)
    sound.layout = "mono"
    for i in range(frames):
      image = np.full((16, 16, 3), 8 * i % 256, np.uint8)
      container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
    container.mux(video.encode(None))
    t = np.arange(int(frames / rate * audio_rate)) / audio_rate
    wave = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    frame = av.AudioFrame.from_ndarray(wave, format="flt", layout="mono")
    frame.sample_rate = audio_rate
    for packet in [*sound.encode(frame), *sound.encode(None)]:
      container.mux(packet)


def write(root: Path, *, frames: int = 20, edition: str = "abaw6", seed: int = 0) -> list[str]:
  """Writes the dummy release; returns the annotation stems (trials).

  Args:
    root: the manual folder.
    frames: frames per video.
    edition: ``abaw6`` (``6th ABAW Annotations/VA_Estimation_Challenge``) or ``abaw2``
      (``annotations/VA_Set``).
    seed: the random seed.
  """
  rng = np.random.default_rng(seed)
  root = Path(root)
  va = (
    root / "6th ABAW Annotations" / "VA_Estimation_Challenge"
    if edition == "abaw6"
    else root / "annotations" / "VA_Set"
  )
  stems = []
  for k, (video, sides) in enumerate(VIDEOS.items()):
    _video(root / f"batch{1 + k % 2}" / f"{video}.mp4", frames, int(video.split("-")[1]))
    for side in sides or ("",):
      stem = f"{video}{side}"
      stems.append(stem)
      values = np.tanh(np.cumsum(rng.normal(0, 0.3, (frames, 2)), axis=0))
      values[:3] = -5  # No face at the start.
      split = "Validation_Set" if k == 2 else "Train_Set"
      path = va / split / f"{stem}.txt"
      path.parent.mkdir(parents=True, exist_ok=True)
      rows = [f"{v:.3f},{a:.3f}" if v != -5 else "-5,-5" for v, a in values]
      path.write_text("\n".join(["valence,arousal", *rows]) + "\n")
      crops = root / "cropped_aligned" / stem
      crops.mkdir(parents=True, exist_ok=True)
      for i in range(1, frames + 1):
        if i != 5:  # A face-detection miss.
          level = int(127 + 120 * values[i - 1, 0]) if values[i - 1, 0] != -5 else 0
          Image.fromarray(np.full((112, 112, 3), level, np.uint8)).save(crops / f"{i:05d}.jpg")
  return stems
