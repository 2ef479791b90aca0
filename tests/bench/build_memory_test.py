"""The build-memory benchmark's code path, at tiny sizes (its figures: docs/benchmarks.md)."""

import json

import pytest

from mtpkd_jax.bench import build_memory


@pytest.mark.slow
def test_two_builds_side_by_side(tmp_path):
  result = build_memory.run("mosi", (1, 2), tmp_path)
  small, large = result["rows"]
  assert (small["videos_per_fold"], large["videos_per_fold"]) == (1, 2)
  assert large["units"] == 2 * small["units"] and large["examples"] == 2 * small["examples"]
  assert result["ratio"] == pytest.approx(large["peak_rss_mib"] / small["peak_rss_mib"])
  assert result["examples_delta_mib"] == pytest.approx(small["examples_mib"])
  table = build_memory.markdown(result)
  assert "| 1 | 3 | 18 |" in table and "| 2 | 6 | 36 |" in table
  assert "mosi/sentiment" in table and "Peak RSS large / small" in table
  assert json.loads((tmp_path / "build_memory.json").read_text())["rows"] == result["rows"]


@pytest.mark.parametrize(
  "name, sizes, message", [("voxceleb", None, "biovid"), ("mosi", (2, 2), "increasing")]
)
def test_bad_arguments_are_named(tmp_path, name, sizes, message):
  with pytest.raises(ValueError, match=message):
    build_memory.run(name, sizes, tmp_path)
