"""Decoding video frames, audio and images, log-mel features, and cutting sequences into clips.

Video and audio are decoded with PyAV (FFmpeg's libraries, inside the wheel); images with
Pillow; log-mel spectrograms are computed in NumPy. Unreadable or too short media raise
:class:`~mtpkd_jax.data.builders.report.BadFile`, so a build skips and lists the unit.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image

from mtpkd_jax.data.builders.report import BadFile

_WINDOWS = 256  # Log-mel windows transformed at once.


def video_frames(path: Path, indices: Sequence[int], size: tuple[int, int]) -> np.ndarray:
  """Frames ``indices`` (0-based, in presentation order) of a video, resized, RGB.

  Only what is kept is decoded: the decoder seeks to the keyframe at or before the first
  wanted frame and decodes forward to the last (with FFmpeg's own threads where this process
  may use more than one core); each kept frame is converted and resized once. Frame numbers
  come from the timestamps at the container's constant frame rate; a video whose timestamps
  do not number its frames one by one (a variable frame rate, a seek that lands past the
  frame), or whose container gives no frame count, is decoded from its first frame.

  Args:
    path: the video file.
    indices: frame numbers to keep, in any order; repeats allowed.
    size: ``(height, width)`` of the returned frames.

  Returns:
    uint8 array of shape ``[len(indices), height, width, 3]``.

  Raises:
    BadFile: if the file cannot be decoded or has fewer frames than ``max(indices) + 1``.
  """
  wanted = sorted(set(int(i) for i in indices))
  try:
    frames = _frames(path, wanted, size, seek=True)
    if frames is None:
      frames = _frames(path, wanted, size, seek=False)
  except (av.FFmpegError, OSError) as error:
    raise BadFile(path, f"unreadable video ({error})") from None
  if len(frames) < len(wanted):
    raise BadFile(path, f"has {len(frames) and max(frames) + 1} frames, needs {wanted[-1] + 1}")
  return np.stack([frames[int(i)] for i in indices])


def _frames(path: Path, wanted: list[int], size, seek: bool) -> dict[int, np.ndarray] | None:
  """The ``wanted`` frames (sorted) of the file, by number; ``None`` where the seek failed."""
  with av.open(str(path)) as container:
    if not container.streams.video:
      raise BadFile(path, "no video stream")
    stream = container.streams.video[0]
    # FFmpeg's threads where the process has cores to spare (a build in this process); a
    # build's workers each run on one core, where they would only take turns.
    stream.thread_type = "AUTO" if len(os.sched_getaffinity(0)) > 1 else "NONE"
    if seek and wanted[0]:
      return _seek_and_decode(container, stream, wanted, size)
    return _decode(enumerate(container.decode(stream)), wanted, size)


def _decode(numbered, wanted: list[int], size: tuple[int, int]) -> dict[int, np.ndarray]:
  """The wanted frames of ``(number, frame)`` pairs, converted; stops after the last."""
  frames = {}
  for number, frame in numbered:
    if number in wanted:
      frames[number] = frame.to_ndarray(width=size[1], height=size[0], format="rgb24")
    if number >= wanted[-1]:
      break
  return frames


def _seek_and_decode(container, stream, wanted: list[int], size) -> dict[int, np.ndarray] | None:
  """The wanted frames, decoded from the keyframe before the first; ``None`` if not possible.

  Not possible: no frame rate or time base, no frame count or duration in the container, a
  frame count that is not the duration at that rate, or timestamps that do not number the
  frames one by one (each decoded frame one after the previous, the first at or before the
  first wanted frame).
  """
  rate, base = stream.average_rate, stream.time_base
  if not rate or not base or not stream.frames or not stream.duration:
    # Without a frame count (Matroska, WebM, MPEG-TS), a gap in the timestamps before the
    # seek point would go unseen and shift every frame number after it.
    return None
  if stream.frames != round(stream.duration * base * rate):
    return None  # The container's frame count is not its duration at the average rate.
  start = stream.start_time or 0
  container.seek(start + int(wanted[0] / rate / base), stream=stream, backward=True)

  def numbered():
    previous = None
    for frame in container.decode(stream):
      if frame.pts is None:
        raise _Unnumbered
      number = round((frame.pts - start) * base * rate)
      if (previous is None and number > wanted[0]) or (
        previous is not None and number != previous + 1
      ):
        raise _Unnumbered
      previous = number
      yield number, frame

  try:
    return _decode(numbered(), wanted, size)
  except _Unnumbered:
    return None


class _Unnumbered(Exception):  # noqa: N818  (a signal inside this module, never raised out)
  """The timestamps after a seek do not number the frames one by one."""


def video_rate(path: Path) -> float:
  """The video stream's average frame rate (frames per second), from the container."""
  try:
    with av.open(str(path)) as container:
      if not container.streams.video or not container.streams.video[0].average_rate:
        raise BadFile(path, "no video stream with a frame rate")
      return float(container.streams.video[0].average_rate)
  except (av.FFmpegError, OSError) as error:
    raise BadFile(path, f"unreadable video ({error})") from None


def audio(path: Path, rate: int) -> np.ndarray:
  """The first audio stream of a media file, mixed to mono and resampled.

  Returns:
    float32 array of shape ``[samples]`` at ``rate`` Hz.

  Raises:
    BadFile: if the file cannot be decoded or has no audio stream.
  """
  chunks = []
  try:
    with av.open(str(path)) as container:
      if not container.streams.audio:
        raise BadFile(path, "no audio stream")
      resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
      for frame in container.decode(audio=0):
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
      chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
  except (av.FFmpegError, OSError) as error:
    raise BadFile(path, f"unreadable audio ({error})") from None
  if not chunks:
    raise BadFile(path, "empty audio stream")
  return np.concatenate(chunks).astype(np.float32, copy=False)


def image(path: Path, size: tuple[int, int]) -> np.ndarray:
  """An RGB image resized to ``(height, width)``: uint8 ``[height, width, 3]``.

  Raises:
    BadFile: if the image cannot be decoded.
  """
  try:
    with Image.open(path) as img:
      img = img.convert("RGB")
      if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.BILINEAR)
      return np.asarray(img, dtype=np.uint8)
  except (OSError, ValueError) as error:
    raise BadFile(path, f"unreadable image ({error})") from None


def window_starts(num: int, length: int, stride: int) -> list[int]:
  """First frames of windows of ``length`` frames every ``stride`` frames over ``num`` frames.

  A last window ending at the last frame is added when the stride does not land there, so
  that the tail of a sequence is in an example too.

  Args:
    num: frames in the sequence, at least ``length``.
    length: frames per window, positive.
    stride: frames between window starts, positive.

  Returns:
    The 0-based starts, increasing; the last is ``num - length``.
  """
  starts = list(range(0, num - length + 1, stride))
  if starts[-1] != num - length:
    starts.append(num - length)
  return starts


def _hz_to_mel(hz):
  return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel):
  return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
  """Triangular HTK-mel filters from 0 Hz to ``rate / 2``: float32 ``[n_fft // 2 + 1, n_mels]``."""
  bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
  edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(rate / 2), n_mels + 2))
  lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
  rising = (bins - lower) / (centre - lower)
  falling = (upper - bins) / (upper - centre)
  return np.maximum(0.0, np.minimum(rising, falling)).T.astype(np.float32)


def log_mel(
  waveform: np.ndarray, rate: int, centres_s: np.ndarray, n_fft: int, n_mels: int
) -> np.ndarray:
  """Log-mel energies of Hann windows of ``n_fft`` samples centred on given times.

  Windows reaching past either end of the waveform see zeros there. Centring windows on
  chosen times (rather than on a fixed hop) aligns the features with video frames of any
  frame rate.

  Args:
    waveform: float ``[samples]`` at ``rate`` Hz.
    rate: sampling rate, Hz.
    centres_s: float ``[steps]``: window centres, seconds.
    n_fft: window and FFT length, samples.
    n_mels: mel bands.

  Returns:
    float32 ``[steps, n_mels]``: ``log(mel energy + 1e-6)``.
  """
  starts = np.round(np.asarray(centres_s) * rate).astype(np.int64) - n_fft // 2
  hann, filters = np.hanning(n_fft), mel_filterbank(rate, n_fft, n_mels)
  out = np.empty((len(starts), n_mels), np.float32)
  # A chunk of windows at a time: memory does not grow with the video's length.
  for first in range(0, len(starts), _WINDOWS):
    positions = starts[first : first + _WINDOWS, None] + np.arange(n_fft)
    inside = (positions >= 0) & (positions < len(waveform))
    windows = np.where(inside, waveform[np.clip(positions, 0, len(waveform) - 1)], 0.0)
    spectrum = np.abs(np.fft.rfft(windows * hann, axis=-1)) ** 2
    out[first : first + _WINDOWS] = np.log(spectrum @ filters + 1e-6)
  return out
