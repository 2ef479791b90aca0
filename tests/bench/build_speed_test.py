"""The build-speed benchmark's code path at a tiny size, its memory probe and its estimate."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from mtpkd_jax.bench import build_speed, processes


@pytest.mark.slow
def test_three_builds_side_by_side(tmp_path):
  result = build_speed.run(4, 64, 48, 12, tmp_path)
  assert result["videos"] == 4 and [r["units"] for r in result["rows"]] == [4, 4, 4]
  assert [r["setting"] for r in result["rows"]][:2] == ["1 core", "1 worker"]
  assert result["rows"][0]["speedup"] == 1.0
  for row in result["rows"]:
    assert row["s_per_video"] == pytest.approx(row["build_s"] / 4)
    assert row["peak_rss_mib"] > 50
  table = build_speed.markdown(result)
  assert "| 1 core |" in table and "8700 videos" in table
  assert json.loads((tmp_path / "build_speed.json").read_text())["rows"] == result["rows"]


def test_the_estimate_scales_the_measured_speed():
  rows = [
    {"s_per_video": 0.4, "speedup": 1.0},
    {"s_per_video": 0.25, "speedup": 1.6},
  ]
  estimate = build_speed.estimate({"cores": 2, "rows": rows})
  assert estimate["parallel_efficiency"] == pytest.approx(0.8)
  assert estimate["2_cores_h"] == pytest.approx(8700 * 0.25 / 3600)
  assert estimate["16_cores_h"] == pytest.approx(8700 * 0.4 / (16 * 0.8) / 3600)


def test_the_memory_probe_sums_a_process_tree():
  # A child holding 200 MiB more than a bare interpreter: the tree holds both.
  code = "import numpy, time; a = numpy.ones(200 * 2**18, numpy.float32); time.sleep(30)"
  alone = processes.tree_rss_mib(os.getpid())
  child = subprocess.Popen([sys.executable, "-c", code])
  try:
    time.sleep(3)
    grown = processes.tree_rss_mib(os.getpid())
  finally:
    child.kill()
    child.wait()
  assert grown - alone > 200


def _probe_cpu(queue):
  """In a fresh process: a child that spends 0.6 s of CPU before `with` and 0.5 s inside it,
  and one started inside that spends 0.5 s and ends: 1 s inside (and this process's own)."""
  spin = "import time\nwhile time.process_time() < {}: pass\n"
  before = subprocess.Popen(
    [sys.executable, "-c", spin.format(0.6) + "input()\n" + spin.format(1.1)],
    stdin=subprocess.PIPE,
    text=True,
  )
  try:
    while (processes.cpu_s(before.pid) or 0) < 0.55:  # Clock ticks: 0.59 s.
      time.sleep(0.05)
    with processes.TreePeak() as peak:
      before.communicate("\n", timeout=60)
      subprocess.run([sys.executable, "-c", spin.format(0.5)], check=True)
  finally:
    before.kill()
  queue.put({"cpu_s": peak.cpu_s})


def test_the_cpu_probe_counts_what_the_tree_used_inside_with():
  # In a process of its own: the probe counts its root too, and a test worker's threads
  # (another test's read-ahead, XLA's) would add their CPU.
  assert 0.9 < processes.in_fresh_process(_probe_cpu)["cpu_s"] < 1.3


def test_texture_moves_a_pixel_a_frame():
  frames = build_speed.texture(64, 48, frames=3)
  assert frames.shape == (3, 48, 64, 3) and frames.dtype == np.uint8
  np.testing.assert_array_equal(frames[1, :, :-1], frames[0, :, 1:])


@pytest.mark.parametrize("videos, width", [(3, 64), (0, 64), (4, 63)])
def test_bad_arguments_are_named(tmp_path, videos, width):
  with pytest.raises(ValueError, match="even"):
    build_speed.run(videos, width, 48, 12, tmp_path)
