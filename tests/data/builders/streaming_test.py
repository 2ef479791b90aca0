"""Building streams: every builder holds at most two examples at once, whatever the units hold.

Memory flat in the dataset's size is measured by ``experiments/bench_build.py``; what makes
it so is checked here without timing: each example's arrays are watched (weak references)
from the moment the build writes it, and no more than two may be alive at a time (the one
being written and the previous, which its loop variable holds until the next arrives).
Holding a unit's examples in a list, or the written examples anywhere, keeps more alive.
"""

import weakref

import numpy as np
import pytest

from mtpkd_jax.data import pipeline, records
from mtpkd_jax.data.builders.dummy import affwild2, biovid, mosi, recola

CASES = {
  "biovid/part_a_binary": (biovid, {"subjects": 2, "samples_per_class": 2}, {"image_size": 8}),
  # 20 frames in clips of 4 every 2: nine clips per trial, more than two in every unit.
  "affwild2/va": (affwild2, {}, {"image_size": 8, "clip_length": 4, "clip_stride": 2}),
  "recola/arousal": (recola, {"recordings": 1}, {"window": 20, "stride": 10}),
  "mosi/sentiment": (mosi, {"videos_per_fold": 1}, {"max_words": 4}),
}


def _watched(examples, alive: set, most: list):
  """``examples``, each one's arrays watched from the moment it is written."""
  for number, example in enumerate(examples):
    for value in example.values():
      if isinstance(value, np.ndarray):
        weakref.finalize(value, alive.discard, number)
    alive.add(number)
    most[0] = max(most[0], len(alive))
    yield example


@pytest.mark.parametrize("name", CASES)
def test_a_build_holds_at_most_two_examples(tmp_path, monkeypatch, name):
  dummy, files, options = CASES[name]
  dummy.write(tmp_path / "manual", **files)
  write, alive, most = records.write, set(), [0]

  def watched_write(directory, name, features, examples, **kwargs):
    write(directory, name, features, _watched(examples, alive, most), **kwargs)

  monkeypatch.setattr(records, "write", watched_write)
  builder = pipeline.builder(name, str(tmp_path / "tfds"), options, str(tmp_path / "manual"))
  built = builder.download_and_prepare()
  assert built.examples > 4
  assert most[0] <= 2, f"{most[0]} examples alive at once"
