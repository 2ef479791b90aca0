"""MT-PKDOT, PKDOT and the baselines on BioVid Part A / B: video student, physiology privileged.

Build the dataset once from your download (README, "Datasets"), then train:

  python -m experiments.build_dataset --dataset=biovid/part_a_binary --manual_dir=DIR
  python -m experiments.train --config experiments/configs/biovid.py:part_a_binary \\
      --workdir results/biovid_a_binary

``arg`` is ``<variant>[,loso][,smoke]``, variant one of ``part_a_binary | part_a_5class |
part_b_binary | part_b_5class``. Without ``loso``: 5 folds by subject; with it,
leave-one-subject-out (one run per subject). Validation subjects are carved from each fold's
training subjects. Accuracy and macro-F1 on the test subjects. ``smoke`` trains on generated
dummy files in the release layout, in seconds.
"""

from experiments.configs import common

VARIANTS = ("part_a_binary", "part_a_5class", "part_b_binary", "part_b_5class")
SUBJECTS = {"a": 87, "b": 86}  # In the releases (DATASETS.md); LOSO runs one fold each.


def get_config(arg: str | None = None):
  """The experiment config; ``arg`` is ``<variant>[,loso][,smoke]``."""
  variant, options = common.parse_arg(arg, VARIANTS, ("loso", "smoke"))
  smoke = "smoke" in options
  c = common.base(smoke)
  c.dataset = f"biovid/{variant}"
  c.dataset_options = {"dummy": True, "image_size": 16} if smoke else {}
  c.visual, c.privileged = "video", ("physio",)
  c.encoders_by_kind = common.encoders_by_kind(smoke)
  if "loso" in options and not smoke:
    c.num_folds = c.num_runs = SUBJECTS[variant.split("_")[1]]
  elif not smoke:
    c.num_folds, c.num_runs = 5, 5
  c.stages.unimodal.epochs = 2 if smoke else 30
  return c
