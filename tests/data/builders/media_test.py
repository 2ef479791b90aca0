"""Log-mel features against a window-by-window NumPy reference written here."""

import numpy as np

from mtpkd_jax.data.builders import media

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
