r"""Sizes and repetitions of the train-step scaling benchmark (``experiments/bench_train.py``).

  python -m experiments.bench_train                                       # ~4 min, 2 CPUs
  python -m experiments.bench_train --config experiments/configs/bench_train.py:smoke \
      --output_dir /tmp/bench_train                                       # ~1 min, for tests

Default: the synthetic ``pain_binary`` shapes and encoders, 32 examples per device (MT-PKDOT's
``k = 30`` anchors need a batch above 30) on 1, 2, 4 and 8 devices; ``smoke``: the ``tiny``
shapes and smoke encoders, 8 per device on 1 and 2 devices.
``--config.platform=`` (empty) uses the real devices of an accelerator instead of fake CPU
ones (``device_counts`` must then fit ``jax.device_count()``).
"""

from ml_collections import config_dict

MODES = ("default", "smoke")


def get_config(arg: str | None = None):
  """The benchmark config; ``arg`` is ``None`` (default) or ``smoke``."""
  mode = arg or "default"
  if mode not in MODES:
    raise ValueError(f"Config argument must be one of {MODES} or empty, got {arg!r}.")
  smoke = mode == "smoke"
  c = config_dict.ConfigDict()
  c.mode = mode
  # The experiment config whose encoders, widths and method parameters the steps use, and
  # the synthetic dataset variant whose shapes the random inputs have.
  c.experiment = "pain_binary,smoke" if smoke else "pain_binary"
  c.dataset = "tiny" if smoke else "pain_binary"
  c.per_device_batch = 8 if smoke else 32
  c.device_counts = (1, 2) if smoke else (1, 2, 4, 8)
  # Timed calls (the median is reported) and untimed calls before.
  c.repeats = 3 if smoke else 5
  c.warmup = 1 if smoke else 2
  # "cpu": N fake CPU devices per process (XLA_FLAGS); "": the machine's own devices.
  c.platform = "cpu"
  return c
