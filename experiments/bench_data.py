"""The training input's speed: features files streamed or in memory, or BioVid clips from disk.

  python -m experiments.bench_data                  # N = 2,000 and 16,000 sequences [64, 256]
  python -m experiments.bench_data --sizes=200,1600 --length=16 --dim=32   # 2-3 minutes
  python -m experiments.bench_data --case=biovid    # BioVid clips: input alone, and stage 0
  python -m experiments.bench_data --case=biovid --videos=256 --train_steps=0   # input only

``--case=features`` (:mod:`mtpkd_jax.bench.streaming`): peak memory and throughput of
training on features files of two sizes; writes ``results/bench_data/streaming.json``.
``--case=biovid`` (:mod:`mtpkd_jax.bench.input_speed`): BioVid clips per second read from
``array_record`` files on disk in batches of 32, per read-ahead depth, alone and feeding the
stage-0 step of the default video encoder; writes ``results/bench_data/input_speed.json``.
Both print a table.
"""

from pathlib import Path

from absl import app, flags

from experiments.configs import biovid, features
from mtpkd_jax.bench import input_speed, streaming

_CASE = flags.DEFINE_enum("case", "features", ["features", "biovid"], "What to measure.")
_SIZES = flags.DEFINE_list("sizes", ["2000", "16000"], "Numbers of examples (features).")
_LENGTH = flags.DEFINE_integer("length", 64, "Steps per sequence (features).")
_DIM = flags.DEFINE_integer("dim", 256, "Features per step (features).")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Training batch size (features).")
_VIDEOS = flags.DEFINE_integer("videos", 1024, "Clips in the dataset (biovid).")
_STEPS = flags.DEFINE_integer("steps", 200, "Batches read per read-ahead depth (biovid).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 5, "Stage-0 steps per depth (biovid).")
_DEPTHS = flags.DEFINE_list("depths", ["0", "2"], "Read-ahead depths, in batches (biovid).")
_OUT = flags.DEFINE_string("out", "results/bench_data", "Output folder.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  out = Path(_OUT.value)
  if _CASE.value == "biovid":
    try:
      result = input_speed.run(
        biovid.get_config("part_a_binary"),
        _VIDEOS.value,
        _STEPS.value,
        _TRAIN_STEPS.value,
        [int(d) for d in _DEPTHS.value],
        out,
      )
    except ValueError as error:
      raise app.UsageError(str(error)) from None
    print(input_speed.markdown(result))
    return
  config = features.get_config("smoke")
  rows = streaming.run(
    config, [int(s) for s in _SIZES.value], _LENGTH.value, _DIM.value, _BATCH.value, out
  )
  print(streaming.markdown(rows))


if __name__ == "__main__":
  app.run(main)
