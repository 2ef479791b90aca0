"""Peak memory of building a licensed dataset from dummy files at two sizes (flat: it streams).

  python -m experiments.bench_build                     # BioVid Part A, 16 and 64 subjects
  python -m experiments.bench_build --dataset=affwild2  # 200 and 800 frames per video
  python -m experiments.bench_build --dataset=recola --sizes=2,8

Datasets: ``biovid``, ``affwild2``, ``recola``, ``mosi`` (what each size sets:
``mtpkd_jax.bench.build_memory.CASES``). Writes ``results/bench_build/build_memory.json``
and prints a table.
"""

from pathlib import Path

from absl import app, flags

from mtpkd_jax.bench import build_memory

_DATASET = flags.DEFINE_enum("dataset", "biovid", sorted(build_memory.CASES), "Dataset to build.")
_SIZES = flags.DEFINE_list("sizes", None, "Small and large size (default: the dataset's).")
_OUT = flags.DEFINE_string("out", "results/bench_build", "Output folder.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  sizes = [int(s) for s in _SIZES.value] if _SIZES.value else None
  result = build_memory.run(_DATASET.value, sizes, Path(_OUT.value))
  print(build_memory.markdown(result))


if __name__ == "__main__":
  app.run(main)
