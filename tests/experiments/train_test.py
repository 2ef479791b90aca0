"""The main job's app: SIGKILLed mid-stage, rerun, it ends as an uninterrupted run."""

import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments.configs import synthetic_mtpkdot
from mtpkd_jax.comparison import runner
from tests.cpu_env import cpu_env

pytestmark = pytest.mark.slow  # Runs the main job's app end to end, killed and resumed.

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "experiments/configs/synthetic_mtpkdot.py:pain_binary,smoke"


def _command(workdir, data_dir, *overrides):
  return [
    sys.executable,
    "-m",
    "experiments.train",
    f"--config={CONFIG}",
    f"--workdir={workdir}",
    f"--config.data_dir={data_dir}",
    *(
      overrides
      or (
        "--config.methods=('visual_only',)",
        "--config.stages.unimodal.epochs=8",
        "--config.checkpoint_every=4",
      )
    ),
  ]


def _metrics(workdir):
  return json.loads((Path(workdir) / "results.json").read_text())["runs"][0]["methods"]


def _test_outputs(workdir):
  """Every method's outputs on the test split, ``{name: array}``."""
  with np.load(Path(workdir) / "run0_fold0_seed0" / "test_outputs.npz") as outputs:
    return dict(outputs)


def _logged(workdir, stage):
  """``{(step, name): value}`` of a stage's metrics log, the last line of a replayed step."""
  path = Path(workdir) / "run0_fold0_seed0" / stage / "logs" / "metrics.jsonl"
  values = {}
  for row in map(json.loads, path.read_text().splitlines()):
    step = row.pop("step")
    values |= {(step, name): value for name, value in row.items()}
  return values


def test_killed_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(tmp_path):
  data_dir = tmp_path / "tfds"
  subprocess.run(
    _command(tmp_path / "reference", data_dir),
    cwd=ROOT,
    env=cpu_env(),
    check=True,
    capture_output=True,
  )
  reference = _metrics(tmp_path / "reference")
  ran_on = json.loads((tmp_path / "reference" / "results.json").read_text())["environment"]
  assert ran_on["packages"]["jax"] == jax.__version__
  assert ran_on["xla_flags"] == cpu_env()["XLA_FLAGS"]

  workdir = tmp_path / "killed"
  checkpoints = workdir / "run0_fold0_seed0" / "unimodal_video" / "checkpoints"
  process = subprocess.Popen(
    _command(workdir, data_dir),
    cwd=ROOT,
    env=cpu_env(),
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
    _command(workdir, data_dir), cwd=ROOT, env=cpu_env(), check=True, capture_output=True, text=True
  )
  assert _metrics(workdir) == reference
  # Smoke models all score chance, so the metrics alone would pass a run of other weights or
  # another key: the outputs and the logged losses must match too, bit for bit (same seed,
  # devices and programs; the state restored exactly). The outputs are of the best validation
  # step, which may precede the checkpoint: only the logs see the steps after the resume.
  outputs, expected = _test_outputs(workdir), _test_outputs(tmp_path / "reference")
  assert outputs.keys() == expected.keys()
  for name in expected:
    np.testing.assert_array_equal(outputs[name], expected[name], err_msg=name)
  # The rerun's progress bar starts at the checkpointed step, not at 0.
  first = re.search(r"unimodal_video:[^|]*\|[^|]*\|\s*(\d+)/(\d+)", resumed.stderr)
  assert first is not None, resumed.stderr[-2000:]
  resumed_from = int(first.group(1))
  assert 4 <= resumed_from < int(first.group(2))
  stage = "unimodal_video"
  logged, expected = _logged(workdir, stage), _logged(tmp_path / "reference", stage)
  # The killed run's unflushed lines are lost; every step after the checkpoint is logged again.
  assert logged.items() <= expected.items()
  assert {key for key in expected if key[0] > resumed_from} <= logged.keys()


def test_a_rerun_with_a_changed_stage_config_says_what_it_retrains(tmp_path):
  """The app hides the libraries' chatter (Orbax's saves and restores), not the package's."""
  command = _command(tmp_path / "run", tmp_path / "tfds", "--config.methods=('visual_only',)")
  first = subprocess.run(
    command, cwd=ROOT, env=cpu_env(), check=True, capture_output=True, text=True
  )
  changed = [*command, "--config.stages.unimodal.learning_rate=0.0005"]
  rerun = subprocess.run(
    changed, cwd=ROOT, env=cpu_env(), check=True, capture_output=True, text=True
  )
  stale = tmp_path / "run" / "run0_fold0_seed0" / "unimodal_video.stale"
  assert stale.is_dir()
  message = (
    f"Stage 'unimodal_video' is stale (changed: config.stage.learning_rate): retraining it; "
    f"the old one is in {stale}."
  )
  assert _warnings(first) == []
  assert [line.split("] ", 1)[1] for line in _warnings(rerun)] == [message], rerun.stderr[-2000:]


def _warnings(run):
  """The absl warning, error and fatal lines of a finished subprocess."""
  return re.findall(r"^[WEF]\d{4} .*$", run.stderr, re.MULTILINE)


def _train_logs(workdir):
  """Every stage's logged metrics, ``{stage: [record, ...]}``."""
  return {
    path.parent.parent.name: [json.loads(line) for line in path.read_text().splitlines()]
    for path in sorted(Path(workdir).glob("run0_*/*/logs/metrics.jsonl"))
  }


def _assert_close(a, b, where, rel_tol=5e-4):
  # Float sums run in another order on 4 devices (gradients averaged over shards) and the
  # difference grows over a stage's steps to ~2e-4; a dropout mask drawn per device moves
  # the logged losses by more than 1e-3. The structural-OT students pick anchors (top-k) and
  # teachers (argmin) discretely, which turns that drift into ~2e-3: 1e-2 for them.
  if isinstance(a, dict):
    assert set(a) == set(b), where
    for key in a:
      tol = 1e-2 if key == "student_mt_pkdot" else rel_tol
      _assert_close(a[key], b[key], f"{where}/{key}", tol)
  elif isinstance(a, list):
    assert len(a) == len(b), where
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
      _assert_close(x, y, f"{where}[{i}]", rel_tol)
  else:
    assert math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-6), f"{where}: {a} != {b}"


def test_one_and_four_devices_train_every_stage_identically_with_dropout_on(tmp_path):
  """Every random draw is a function of (seed, stage, step, global example index)."""
  data_dir = tmp_path / "tfds"
  # MT-PKDOT, with every stage before it, stands for the other students, whose steps
  # `tests/methods/stages_test.py` runs on 1 and 4 devices one by one.
  methods = "('joint_teacher','visual_only','mt_pkdot')"
  # Builds the dataset once, before the two runs read it.
  subprocess.run(
    [
      sys.executable,
      "-c",
      f"from mtpkd_jax.data import pipeline; pipeline.open_dataset("
      f"'synthetic_affect/tiny', {str(data_dir)!r})",
    ],
    cwd=ROOT,
    env=cpu_env(),
    check=True,
    capture_output=True,
  )
  runs = {
    devices: subprocess.Popen(
      _command(tmp_path / str(devices), data_dir, f"--config.methods={methods}"),
      cwd=ROOT,
      env=cpu_env(devices),
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
    )
    for devices in (1, 4)
  }
  for process in runs.values():
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-2000:]
  results = {d: json.loads((tmp_path / str(d) / "results.json").read_text()) for d in runs}
  assert results[4]["devices"].startswith("4 x")
  assert synthetic_mtpkdot.get_config("pain_binary,smoke").dropout_rate > 0
  _assert_close(results[1]["runs"][0]["methods"], results[4]["runs"][0]["methods"], "results")
  logs = {d: _train_logs(tmp_path / str(d)) for d in runs}
  assert len(logs[1]) == 5  # Two backbones, joint, alignment, the student.
  _assert_close(logs[1], logs[4], "logs")


def test_the_smoke_config_reports_each_tuned_methods_candidate_best_on_validation(tmp_path):
  """Every candidate of the smoke grids trains; a tuned row is the picked one's test score."""
  config = synthetic_mtpkdot.get_config("pain_binary,smoke")
  methods = ("visual_only", *config.tune)
  workdir, data_dir = tmp_path / "run", tmp_path / "tfds"
  run = subprocess.run(
    _command(workdir, data_dir, f"--config.methods={methods!r}"),
    cwd=ROOT,
    env=cpu_env(),
    check=True,
    capture_output=True,
    text=True,
  )
  results = json.loads((workdir / "results.json").read_text())
  tuned, rows = results["runs"][0]["tuning"], results["runs"][0]["methods"]
  assert list(tuned) == list(config.tune)
  config.data_dir = str(data_dir)
  outputs = _test_outputs(workdir)
  y = runner.open_dataset(config).y[outputs["indices"]]
  for method, candidates in config.tune.items():
    record = tuned[method]
    assert tuple(record["candidates"]) == candidates
    # The best validation score each candidate's stage logged, read from its own log.
    best = {
      c: max(v for (_, name), v in _logged(workdir, f"student_{c}").items() if name == "val/score")
      for c in candidates
    }
    assert {c: record["candidates"][c]["validation"] for c in candidates} == pytest.approx(best)
    picked = next(c for c in candidates if best[c] == max(best.values()))
    assert record["picked"] == picked
    # The row is the picked candidate's test accuracy, from its saved test outputs.
    accuracy = float(np.mean(outputs[picked].argmax(-1) == y))
    assert rows[method]["accuracy"] == pytest.approx(accuracy)
    assert rows[method] == record["candidates"][picked]["test"]
  assert "picked (runs)" in run.stdout
  assert f"| {methods[1]} |" in (workdir / "results.md").read_text()
