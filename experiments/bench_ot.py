"""Throughput of the OT losses, every implementation side by side in one process.

  python -m experiments.bench_ot                    # default subset, < 5 min on 2 CPU cores
  python -m experiments.bench_ot --config experiments/configs/bench_ot.py:full
  python -m experiments.bench_ot --config experiments/configs/bench_ot.py:smoke \\
      --output_dir /tmp/bench_ot                    # about a minute, for tests

Cases, implementations and the counted work: :mod:`mtpkd_jax.bench.ot_loss_runners` and
:mod:`mtpkd_jax.bench.ot_solver_runners`; table, targets and files:
:mod:`mtpkd_jax.bench.ot_report`. Writes ``bench_ot.json`` and ``bench_ot.png``.
"""

from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from mtpkd_jax.bench import ot_report

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  str(Path(__file__).parent / "configs" / "bench_ot.py"),
  "Benchmark config file, optionally with ':full' or ':smoke'.",
  lock_config=True,
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "results/bench_ot", "Folder for the JSON and PNG.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  ot_report.run(_CONFIG.value, _OUTPUT_DIR.value)


if __name__ == "__main__":
  app.run(main)
