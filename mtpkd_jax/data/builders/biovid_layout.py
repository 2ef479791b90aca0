"""What BioVid's files are named and hold: the pain levels, each part's channels, the rate.

The builder (:mod:`~mtpkd_jax.data.builders.biovid`) reads files by them, and the dummy
writer (:mod:`~mtpkd_jax.data.builders.dummy.biovid`) writes files by them.
"""

LEVELS = ("BL1", "PA1", "PA2", "PA3", "PA4")
CHANNELS = {
  "a": ("gsr", "ecg", "emg_trapezius"),
  "b": ("gsr", "ecg", "emg_trapezius", "emg_corrugator", "emg_zygomaticus"),
}
RATE = 512  # Hz; checked against each file's time column (microseconds).
