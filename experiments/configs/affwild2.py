"""MT-PKDOT, PKDOT and the baselines on Aff-Wild2 (valence-arousal): video student, audio
privileged, CCC.

  python -m experiments.build_dataset --dataset=affwild2/va --manual_dir=DIR
  python -m experiments.train --config experiments/configs/affwild2.py:va --workdir results/affwild2

``arg`` is ``va[,smoke]``. Clips of ``clip_length`` frames (``--config.dataset_options``,
the same as the build's ``--options``) with the mean of their annotated frames as targets
(frames annotated ``-5`` never count); the official validation set is the test split and
validation videos are carved from the training ones. ``1 - CCC`` loss; the test CCC per
dimension is the challenge's, over every annotated frame pooled (``scoring = "frame"``: each
clip's prediction given to its frames, frames of overlapping clips averaged, ``-5`` frames
never scored); model selection uses the validation clips' CCC. ``smoke`` trains on generated
dummy files in the release layout.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
  """The experiment config; ``arg`` is ``va[,smoke]``."""
  variant, options = common.parse_arg(arg, ("va",))
  smoke = "smoke" in options
  c = common.base(smoke, val_subjects=1 if smoke else 0.1)
  c.dataset = f"affwild2/{variant}"
  c.dataset_options = (
    {"dummy": True, "image_size": 16, "clip_length": 4, "clip_stride": 2} if smoke else {}
  )
  c.visual, c.privileged = "video", ("audio",)
  c.encoders_by_kind = common.encoders_by_kind(smoke)
  c.scoring = "frame"
  c.num_runs = 1 if smoke else 3  # The official split: runs differ by seed only.
  return c
