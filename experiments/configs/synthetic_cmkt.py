"""CMKT and its ablations on the embedded MOSI-like ``synthetic_affect`` sentiment data.

The README's CMKT comparison (text strong, audio weak, the score in [-3, 3], 5 runs):

  python -m experiments.train --config experiments/configs/synthetic_cmkt.py \\
      --workdir results/synthetic_cmkt

``arg`` is ``<task>[,visual][,smoke]``: ``sentiment`` (regression, CMU-MOSI's Acc-2, F1, MAE,
correlation and Acc-7), ``binary`` or ``7class`` (classification, accuracy and macro-F1);
``visual`` makes the visual-like modality the weak one instead of audio; ``smoke`` shrinks
everything (``sentiment_tiny``, one run, two epochs) to a few minutes, mostly compilation
(not for ``7class``: the tiny data misses the extreme classes). The methods, on the same
folds and seeds: the weak modality alone (the baseline), the strong one alone (an upper
reference: it needs text at test time), translation only, alignment only, CMKT, and CMKT +
MT-PKDOT's structural OT term (``common.use_cmkt``).
"""

from experiments.configs import common
from mtpkd_jax.data import synthetic_affect

TASKS = {"sentiment": "sentiment", "binary": "sentiment_binary", "7class": "sentiment_7class"}


def get_config(arg: str | None = None):
  """The experiment config; ``arg`` is ``<task>[,visual][,smoke]``."""
  task, options = common.parse_arg(arg, tuple(TASKS), ("visual", "smoke"))
  smoke = "smoke" in options
  if smoke and task == "7class":
    raise ValueError(
      "synthetic_cmkt.py:7class has no smoke run: the tiny data's few utterances miss the "
      "extreme classes (-3, 3) in training; use 'sentiment,smoke' or 'binary,smoke'."
    )
  c = common.base(smoke)
  c.dataset = "synthetic_affect/" + ("sentiment_tiny" if smoke else TASKS[task])
  if smoke and task != "sentiment":  # The tiny data, labelled as the task's classes.
    label = {"binary": "label2", "7class": "label7"}[task]
    c.dataset_options = {"classes": synthetic_affect.SENTIMENT_CLASSES[label]}
  common.use_cmkt(c, weak="visual" if "visual" in options else "audio", strong="text")
  if task == "sentiment":
    c.metrics = "sentiment"
  return c
