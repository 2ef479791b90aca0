"""Log-mel features against a window-by-window NumPy reference written here; frames decoded
after a seek against a decode of every frame from the first."""

import fractions

import av
import numpy as np
import pytest

from mtpkd_jax.data.builders import media, report
from mtpkd_jax.data.builders.dummy import biovid as biovid_dummy

RATE, N_FFT, N_MELS = 8000, 256, 16


def _reference(waveform, centres_s):
  """One window at a time: zero-padded where it reaches past the waveform, Hann, |rfft|^2."""
  padded = np.concatenate([np.zeros(N_FFT), waveform, np.zeros(N_FFT)])
  rows = []
  for centre in centres_s:
    start = int(round(centre * RATE)) - N_FFT // 2 + N_FFT
    power = np.abs(np.fft.rfft(padded[start : start + N_FFT] * np.hanning(N_FFT))) ** 2
    rows.append(np.log(power @ media.mel_filterbank(RATE, N_FFT, N_MELS) + 1e-6))
  return np.array(rows)


def test_log_mel_matches_the_reference_across_chunks_and_past_both_ends():
  waveform = np.random.default_rng(0).normal(0, 0.3, 3 * RATE).astype(np.float32)
  # More windows than one chunk; the first and last reach past the waveform.
  centres = np.linspace(0, 3, 2 * media._WINDOWS + 17)
  got = media.log_mel(waveform, RATE, centres, N_FFT, N_MELS)
  assert got.shape == (len(centres), N_MELS) and got.dtype == np.float32
  np.testing.assert_allclose(got, _reference(waveform, centres), rtol=1e-5, atol=1e-5)


def test_a_tone_peaks_in_the_band_of_its_frequency():
  tone = np.sin(2 * np.pi * 1000 * np.arange(RATE) / RATE).astype(np.float32)
  mels = media.log_mel(tone, RATE, np.array([0.5]), N_FFT, N_MELS)[0]
  filters = media.mel_filterbank(RATE, N_FFT, N_MELS)
  assert mels.argmax() == filters[round(1000 * N_FFT / RATE)].argmax()


def _full_decode(path):
  """Every frame of a video, decoded from the first one by one (no seek), ``[T, H, W, 3]``."""
  with av.open(str(path)) as container:
    return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def gop_video(tmp_path_factory):
  """138 distinct frames (the BioVid length), a keyframe every 12: seeks land before frames."""
  rng = np.random.default_rng(0)
  background = rng.integers(0, 200, (48, 64, 3))
  frames = [(background + 7 * i) % 200 + rng.integers(0, 50, (48, 64, 3)) for i in range(138)]
  path = tmp_path_factory.mktemp("video") / "gop.mp4"
  biovid_dummy.write_video(path, np.array(frames, np.uint8), keyframe_every=12)
  return path


@pytest.mark.parametrize(
  "indices",
  [[0, 3, 5], [50, 52, 70, 61, 50], [60], [130, 137], np.round(np.linspace(50, 70, 10))],
  ids=["start", "middle-repeats", "keyframe", "end", "biovid"],
)
def test_seeking_gives_the_frames_of_a_full_decode(gop_video, monkeypatch, indices):
  seeks = []
  seek_and_decode = media._seek_and_decode

  def watched(*args):
    seeks.append(seek_and_decode(*args))
    return seeks[-1]

  monkeypatch.setattr(media, "_seek_and_decode", watched)
  got = media.video_frames(gop_video, indices, (48, 64))
  np.testing.assert_array_equal(got, _full_decode(gop_video)[np.asarray(indices, int)])
  # Past the first frame the decoder seeked (no fallback to a decode from the start).
  assert [s is not None for s in seeks] == ([True] if min(indices) > 0 else [])


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_a_gap_in_the_timestamps_before_the_first_frame_changes_no_frame(tmp_path, container):
  # Frames 10 onwards are stamped 5 frames late (a variable frame rate); Matroska keeps no
  # frame count, so only a decode from the start numbers the frames after the gap.
  path = tmp_path / f"gap.{container}"
  frames = (np.arange(60)[:, None, None, None] * 4 + np.zeros((1, 32, 32, 3))).astype(np.uint8)
  with av.open(str(path), "w") as output:
    stream = output.add_stream("libx264", rate=25)
    stream.height, stream.width, stream.pix_fmt = 32, 32, "yuv420p"
    stream.codec_context.gop_size = 12
    for i, frame in enumerate(frames):
      video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
      video_frame.pts, video_frame.time_base = i + 5 * (i >= 10), fractions.Fraction(1, 25)
      output.mux(stream.encode(video_frame))
    output.mux(stream.encode(None))
  indices = [30, 31, 45]
  np.testing.assert_array_equal(
    media.video_frames(path, indices, (32, 32)), _full_decode(path)[indices]
  )


def test_a_video_shorter_than_the_frames_is_a_bad_file(gop_video):
  with pytest.raises(report.BadFile, match="needs 141"):
    media.video_frames(gop_video, [100, 140], (48, 64))
