"""Peak memory and throughput of training on features files of two sizes, streamed or in memory.

  python -m experiments.bench_data                  # N = 2,000 and 16,000 sequences [64, 256]
  python -m experiments.bench_data --sizes=200,1600 --length=16 --dim=32   # 2-3 minutes

Writes ``results/bench_data/streaming.json`` and prints a table.
"""

from pathlib import Path

from absl import app, flags

from experiments.configs import features
from mtpkd_jax.bench import streaming

_SIZES = flags.DEFINE_list("sizes", ["2000", "16000"], "Numbers of examples.")
_LENGTH = flags.DEFINE_integer("length", 64, "Steps per sequence.")
_DIM = flags.DEFINE_integer("dim", 256, "Features per step.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Training batch size.")
_OUT = flags.DEFINE_string("out", "results/bench_data", "Output folder.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = features.get_config("smoke")
  rows = streaming.run(
    config,
    [int(s) for s in _SIZES.value],
    _LENGTH.value,
    _DIM.value,
    _BATCH.value,
    Path(_OUT.value),
  )
  print(streaming.markdown(rows))


if __name__ == "__main__":
  app.run(main)
