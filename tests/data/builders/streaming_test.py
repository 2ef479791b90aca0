"""Building streams: every builder holds at most two examples at once, whatever the units hold.

Memory flat in the dataset's size is measured by ``experiments/bench_build.py``; what makes
it so is checked here without timing: each example's arrays are watched (weak references)
from the moment it is serialized (by the process that loads it: a worker, or with one
worker, as here, the build's own), and no more than two may be alive at a time (the one
being serialized and the previous, which its loader may hold until the next arrives).
Holding a unit's examples in a list, or the serialized examples anywhere, keeps more alive.
"""

import itertools
import weakref

import numpy as np
import pytest

from mtpkd_jax.data import pipeline
from mtpkd_jax.data.builders import workers
from mtpkd_jax.data.builders.dummy import affwild2, biovid, mosi, recola

CASES = {
  "biovid/part_a_binary": (biovid, {"subjects": 2, "samples_per_class": 2}, {"image_size": 8}),
  # 20 frames in clips of 4 every 2: nine clips per trial, more than two in every unit.
  "affwild2/va": (affwild2, {}, {"image_size": 8, "clip_length": 4, "clip_stride": 2}),
  "recola/arousal": (recola, {"recordings": 1}, {"window": 20, "stride": 10}),
  "mosi/sentiment": (mosi, {"videos_per_fold": 1}, {"max_words": 4}),
}


def _watched(encode, numbers, alive: set, most: list):
  """``encode``, each example's arrays watched from the moment it is serialized."""

  def watched(example):
    number = next(numbers)
    for value in example.values():
      if isinstance(value, np.ndarray):
        weakref.finalize(value, alive.discard, number)
    alive.add(number)
    most[0] = max(most[0], len(alive))
    return encode(example)

  return watched


@pytest.mark.parametrize("name", CASES)
def test_a_build_holds_at_most_two_examples(tmp_path, monkeypatch, name):
  dummy, files, options = CASES[name]
  dummy.write(tmp_path / "manual", **files)
  load_unit, numbers, alive, most = workers.load_unit, itertools.count(), set(), [0]

  def watched_load_unit(name, load, dataset, encode):
    return load_unit(name, load, dataset, _watched(encode, numbers, alive, most))

  monkeypatch.setattr(workers, "load_unit", watched_load_unit)
  builder = pipeline.builder(name, str(tmp_path / "tfds"), options, str(tmp_path / "manual"))
  built = builder.download_and_prepare(num_workers=1)
  assert built.examples > 4
  assert next(numbers) == built.examples
  assert most[0] <= 2, f"{most[0]} examples alive at once"
