"""The main job's app: SIGKILLed mid-stage, rerun, it ends as an uninterrupted run."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "experiments/configs/synthetic_mtpkdot.py:pain_binary,smoke"


def _command(workdir, data_dir):
  return [
    sys.executable,
    "-m",
    "experiments.train",
    f"--config={CONFIG}",
    f"--workdir={workdir}",
    f"--config.data_dir={data_dir}",
    "--config.methods=('visual_only',)",
    "--config.stages.unimodal.epochs=8",
    "--config.checkpoint_every=4",
  ]


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = ""  # One CPU device, whatever the test process uses.
  return env


def _metrics(workdir):
  return json.loads((Path(workdir) / "results.json").read_text())["runs"][0]["methods"]


def test_killed_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(tmp_path):
  data_dir = tmp_path / "tfds"
  subprocess.run(
    _command(tmp_path / "reference", data_dir),
    cwd=ROOT,
    env=_env(),
    check=True,
    capture_output=True,
  )
  reference = _metrics(tmp_path / "reference")

  workdir = tmp_path / "killed"
  checkpoints = workdir / "run0_fold0_seed0" / "unimodal_video" / "checkpoints"
  process = subprocess.Popen(
    _command(workdir, data_dir),
    cwd=ROOT,
    env=_env(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.monotonic() + 120
  while not any(p.name.isdigit() for p in checkpoints.glob("*")):
    assert process.poll() is None, "the run ended before its first checkpoint"
    assert time.monotonic() < deadline, "no checkpoint within 120 s"
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (workdir / "results.json").exists(), "killed too late: the run had finished"

  resumed = subprocess.run(
    _command(workdir, data_dir), cwd=ROOT, env=_env(), check=True, capture_output=True, text=True
  )
  assert _metrics(workdir) == reference
  # The rerun's progress bar starts at the checkpointed step, not at 0.
  first = re.search(r"unimodal_video:[^|]*\|[^|]*\|\s*(\d+)/(\d+)", resumed.stderr)
  assert first is not None, resumed.stderr[-2000:]
  assert 4 <= int(first.group(1)) < int(first.group(2))
