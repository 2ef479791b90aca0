"""MT-PKDOT, PKDOT and the baselines on CMU-MOSI: visual (Facet) student, text and audio
privileged.

  python -m experiments.build_dataset --dataset=mosi/binary --manual_dir=DIR
  python -m experiments.train --config experiments/configs/mosi.py:binary --workdir results/mosi

``arg`` is ``<task>[,cmkt][,smoke]`` (``binary``: negative vs non-negative, accuracy and F1;
``sentiment``: the score in [-3, 3], with CMU-MOSI's Acc-2, F1, MAE, correlation and Acc-7).
The SDK's standard folds (train / valid / test). ``cmkt`` compares CMKT and its ablations
instead, audio (COVAREP) learning from text (``common.use_cmkt``). ``smoke`` trains on
generated dummy computational sequences.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
  """The experiment config; ``arg`` is ``<task>[,cmkt][,smoke]``."""
  task, options = common.parse_arg(arg, ("binary", "sentiment"), ("cmkt", "smoke"))
  smoke = "smoke" in options
  c = common.base(smoke)
  c.dataset = f"mosi/{task}"
  c.dataset_options = {"dummy": True, "max_words": 8} if smoke else {}
  c.visual, c.privileged = "visual", ("text", "audio")
  c.encoders_by_kind = common.encoders_by_kind(smoke)
  c.num_runs = 1 if smoke else 3  # The official folds: runs differ by seed only.
  if task == "sentiment":
    c.metrics = "sentiment"
  if "cmkt" in options:
    common.use_cmkt(c, weak="audio", strong="text")
  return c
