"""The input-speed benchmark's code path at a tiny size: the input alone, and feeding stage 0."""

import json

import numpy as np
import pytest

from experiments.configs import biovid
from mtpkd_jax.bench import input_speed

CONFIG = biovid.get_config("part_a_binary")


@pytest.mark.slow
def test_the_input_alone_and_feeding_stage_0(tmp_path):
  result = input_speed.run(CONFIG, 32, 2, 1, [0, 2], tmp_path)
  assert result["videos"] == 32 and result["batch_size"] == 32
  # A [10, 112, 112, 3] uint8 clip and [2816, 3] float32 signals.
  assert result["example_mib"] == pytest.approx((10 * 112 * 112 * 3 + 2816 * 3 * 4) / 2**20)
  assert [r["depth"] for r in result["rows"]] == [0, 2]
  for row in result["rows"]:
    assert row["input"] > 0 and row["cpu_ms"] > 0 and row["stage_0"] > 0
  assert result["step_alone"] > 0
  table = input_speed.markdown(result)
  assert "| 0 |" in table and "| 2 |" in table and "stage-0 step alone" in table
  assert json.loads((tmp_path / "input_speed.json").read_text())["rows"] == result["rows"]


def test_the_clips_read_are_the_built_ones(tmp_path):
  input_speed.build(32, tmp_path)
  dataset = input_speed._dataset(32, tmp_path)
  clips = dataset.table.take(np.arange(32), ["video"])["video"]
  assert clips.shape == (32, 10, 112, 112, 3) and clips.dtype == np.uint8
  # Copies of one video: every clip is the same, and not blank.
  assert np.all(clips == clips[:1]) and clips.std() > 10


@pytest.mark.parametrize("args", [(16, 2, 0, [0]), (32, 0, 0, [0]), (32, 2, 0, [-1])])
def test_bad_arguments_are_named(tmp_path, args):
  with pytest.raises(ValueError, match="at least a batch"):
    input_speed.run(CONFIG, *args, tmp_path)
