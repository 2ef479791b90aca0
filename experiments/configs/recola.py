"""MT-PKDOT, PKDOT and the baselines on RECOLA (AVEC 2016): video features student, audio and
physiology privileged, CCC.

  python -m experiments.build_dataset --dataset=recola/arousal --manual_dir=DIR
  python -m experiments.train --config experiments/configs/recola.py:arousal \\
      --workdir results/recola_arousal

``arg`` is ``<dimension>[,cmkt][,smoke]`` (``arousal | valence``). ``cmkt`` compares CMKT
and its ablations instead (``common.use_cmkt``): the video features learn from the audio
ones for arousal, the audio from the video for valence (METHOD.md). The dev recordings are the test
split; two training recordings are held out for validation. ``1 - CCC`` loss; CCC over the
dev windows. ``smoke`` trains on generated dummy files in the release layout.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
  """The experiment config; ``arg`` is ``<dimension>[,cmkt][,smoke]``."""
  dimension, options = common.parse_arg(arg, ("arousal", "valence"), ("cmkt", "smoke"))
  smoke = "smoke" in options
  c = common.base(smoke, val_subjects=1 if smoke else 2)
  c.dataset = f"recola/{dimension}"
  c.dataset_options = {"dummy": True, "window": 20, "stride": 10} if smoke else {}
  c.visual, c.privileged = "video_appearance", ("audio", "ecg", "hrhrv")
  c.encoders_by_kind = common.encoders_by_kind(smoke)
  c.num_runs = 1 if smoke else 3  # The official split: runs differ by seed only.
  if "cmkt" in options:
    video, audio = "video_appearance", "audio"
    strong, weak = (audio, video) if dimension == "arousal" else (video, audio)
    common.use_cmkt(c, weak=weak, strong=strong)
  return c
