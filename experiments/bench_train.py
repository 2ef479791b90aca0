"""Weak scaling of the train step: MT-PKDOT's student stage and a backbone, on 1-8 devices.

  python -m experiments.bench_train                  # default, ~4 min on 2 CPU cores
  python -m experiments.bench_train --config experiments/configs/bench_train.py:smoke \\
      --output_dir /tmp/bench_train                  # ~1 min, for tests

Steps, devices and the OT share: :mod:`mtpkd_jax.bench.train_step`, on the encoders of
``experiments/configs/synthetic_mtpkdot.py`` (its ``config.experiment`` variant). Each device
count runs in its own process. Writes ``bench_train.json`` and ``bench_train.png``, prints the
table.
"""

from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from experiments.configs import synthetic_mtpkdot
from mtpkd_jax.bench import train_step

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  str(Path(__file__).parent / "configs" / "bench_train.py"),
  "Benchmark config file, optionally with ':smoke'.",
  lock_config=True,
)
_OUTPUT_DIR = flags.DEFINE_string(
  "output_dir", "results/bench_train", "Folder for the JSON and PNG."
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  train_step.run(config, synthetic_mtpkdot.get_config(config.experiment), _OUTPUT_DIR.value)


if __name__ == "__main__":
  app.run(main)
