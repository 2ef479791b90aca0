"""Builds of licensed datasets from dummy files: BioVid's speed on 1 and every core, or memory.

  python -m experiments.bench_build                 # BioVid: 480 videos of 640x480, 3 builds
  python -m experiments.bench_build --videos=192 --width=1388 --height=1038   # the release size
  python -m experiments.bench_build --measure=memory                    # BioVid, 16 and 64
  python -m experiments.bench_build --measure=memory --dataset=affwild2 # 200 and 800 frames

``--measure=speed`` (:mod:`mtpkd_jax.bench.build_speed`): seconds per video pinned to one
core (as ``taskset -c 0``), with one worker and with a worker per core, peak memory, and
an estimate of a full BioVid Part A build on 2 and 16 cores; writes
``results/bench_build/build_speed.json``. ``--measure=memory``
(:mod:`mtpkd_jax.bench.build_memory`): peak memory of a build at two sizes (flat: it
streams), for ``biovid``, ``affwild2``, ``recola`` or ``mosi``; writes
``results/bench_build/build_memory.json``. Both print a table.
"""

from pathlib import Path

from absl import app, flags

from mtpkd_jax.bench import build_memory, build_speed

_MEASURE = flags.DEFINE_enum("measure", "speed", ["speed", "memory"], "What to measure.")
_DATASET = flags.DEFINE_enum(
  "dataset", "biovid", sorted(build_memory.CASES), "Dataset to build (memory)."
)
_SIZES = flags.DEFINE_list("sizes", None, "Small and large size (memory; default: the dataset's).")
_VIDEOS = flags.DEFINE_integer("videos", 480, "Videos built (speed; even).")
_WIDTH = flags.DEFINE_integer("width", 640, "Video width (speed; the release: 1388).")
_HEIGHT = flags.DEFINE_integer("height", 480, "Video height (speed; the release: 1038).")
_KEYFRAMES = flags.DEFINE_integer("keyframe_every", 12, "Frames between keyframes (speed).")
_OUT = flags.DEFINE_string("out", "results/bench_build", "Output folder.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  out = Path(_OUT.value)
  try:
    if _MEASURE.value == "speed":
      out.mkdir(parents=True, exist_ok=True)
      result = build_speed.run(_VIDEOS.value, _WIDTH.value, _HEIGHT.value, _KEYFRAMES.value, out)
      print(build_speed.markdown(result))
    else:
      sizes = [int(s) for s in _SIZES.value] if _SIZES.value else None
      print(build_memory.markdown(build_memory.run(_DATASET.value, sizes, out)))
  except ValueError as error:
    raise app.UsageError(str(error)) from None


if __name__ == "__main__":
  app.run(main)
