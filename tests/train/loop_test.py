"""`fit`: selection on validation, stage output, NaN stop, and resume after a real SIGKILL."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
import jax
import numpy as np
import pytest
import train_toys

from mtpkd_jax.train import checkpoint, loop, parallel
from mtpkd_jax.train.writers import MetricWriter

pytestmark = pytest.mark.slow  # Trains toy stages through the host loop.

SCRIPT = Path(__file__).parent / "fit_toy_stage.py"
REPO_ROOT = Path(__file__).parents[2]


def _fit(workdir, model, stage, checkpoint_every=1000, **kwargs):
  run = loop.StageRun(
    stage, workdir, parallel.make_mesh(8), jax.random.key(0), checkpoint_every=checkpoint_every
  )
  return loop.fit(train_toys.make_state(model), train_toys.train_step(model), run, **kwargs)


def test_selects_on_validation_and_hands_the_best_on(tmp_path):
  model = train_toys.MLP()
  validate = train_toys.validation_mse(model)
  history = {}

  def eval_fn(params, batch_stats):
    # Rank steps by a made-up score so that the best step is neither the first nor last.
    step = len(history) * 3 + 3
    history[step] = {**validate(params, batch_stats), "score": -abs(step - 6)}
    return history[step]

  with MetricWriter(tmp_path / "logs") as writer:
    result = _fit(
      tmp_path,
      model,
      stage="teacher",
      batch_for_step=train_toys.batch,
      num_steps=12,
      eval_fn=eval_fn,
      eval_every=3,
      best_metric="score",
      checkpoint_every=5,
      log_every=4,
      writer=writer,
    )
  assert sorted(history) == [3, 6, 9, 12]
  assert result.start_step == 0
  assert result.best["step"] == 6 and result.best["metrics"]["score"] == 0
  with checkpoint.StageCheckpointer(tmp_path, "teacher", save_every=5) as ckpt:
    assert ckpt.saved_steps() == [5, 10, 12]
    best_variables, _ = ckpt.restore_best()
  output, meta = checkpoint.load_stage_output(tmp_path, "teacher", required_by="student")
  assert meta["step"] == 6 and meta["final_step"] == 12
  assert meta["selected_by"] == "best score (max)"
  chex.assert_trees_all_close(output, best_variables)
  chex.assert_trees_all_close(jax.device_get(result.output), output)
  assert not np.allclose(
    output["params"]["Dense_1"]["kernel"], result.state.params["Dense_1"]["kernel"]
  )

  logged = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").open()]
  assert [row["step"] for row in logged if "train/loss" in row] == [4, 8, 12]
  assert [row["step"] for row in logged if "val/mse" in row] == [3, 6, 9, 12]

  # Running the finished stage again resumes at the end and trains nothing more.
  again = _fit(
    tmp_path,
    model,
    stage="teacher",
    batch_for_step=pytest.fail,
    num_steps=12,
    eval_fn=eval_fn,
    best_metric="score",
  )
  assert again.start_step == 12 and again.best == result.best


def test_a_part_is_selected_on_its_own_metric_and_grafted_into_the_output(tmp_path):
  model = train_toys.MLP()
  steps = []
  params_at = {}

  def eval_fn(params, batch_stats):
    step = len(steps) * 2 + 2
    steps.append(step)
    params_at[step] = jax.device_get(params)
    # The whole model is best at step 4, its last layer on its own metric at step 8.
    return {"score": -abs(step - 4), "layer_loss": abs(step - 8)}

  selection = loop.PartSelection(("Dense_1",), metric="layer_loss", mode="min")
  kwargs = dict(
    stage="joint",
    batch_for_step=train_toys.batch,
    num_steps=10,
    eval_fn=eval_fn,
    eval_every=2,
    best_metric="score",
    parts={"last": selection},
  )
  result = _fit(tmp_path, model, **kwargs)
  assert result.best["step"] == 4 and result.parts["last"]["step"] == 8
  output, meta = checkpoint.load_stage_output(tmp_path, "joint")
  chex.assert_trees_all_close(output["params"]["Dense_0"], params_at[4]["Dense_0"])
  chex.assert_trees_all_close(output["params"]["Dense_1"], params_at[8]["Dense_1"])
  assert not np.allclose(params_at[4]["Dense_1"]["kernel"], params_at[8]["Dense_1"]["kernel"])
  assert meta["step"] == 4 and meta["parts"]["last"]["step"] == 8
  assert meta["selected_by"] == "best score (max); Dense_1: best layer_loss (min) at step 8"

  # A resumed run keeps both selections; changing the part's metric is refused.
  again = _fit(tmp_path, model, **kwargs)
  assert again.parts == result.parts
  with pytest.raises(ValueError, match="best_last copy by layer_loss"):
    _fit(
      tmp_path,
      model,
      **{**kwargs, "parts": {"last": dataclasses.replace(selection, metric="score")}},
    )


def test_a_part_must_name_modules_of_the_model(tmp_path):
  with pytest.raises(ValueError, match=r"modules \['tnet0'\] that are not in the params"):
    _fit(
      tmp_path,
      train_toys.MLP(),
      stage="joint",
      batch_for_step=train_toys.batch,
      num_steps=2,
      eval_fn=lambda p, b: {"score": 0.0},
      best_metric="score",
      parts={"tnets": loop.PartSelection(("tnet0",), metric="score")},
    )


def test_nan_loss_stops_without_saving_the_bad_state(tmp_path):
  model = train_toys.MLP(batch_norm=True)

  def batch_for_step(i):
    batch = train_toys.batch(i)
    if i == 6:
      batch["y"][0] = np.nan
    return batch

  with pytest.raises(FloatingPointError, match=r"Stage 'student'.* at step 7 \(") as error:
    _fit(
      tmp_path,
      model,
      stage="student",
      batch_for_step=batch_for_step,
      num_steps=10,
      checkpoint_every=2,
    )
  assert "last good checkpoint is step 6" in str(error.value)
  template = train_toys.make_state(model)
  with checkpoint.StageCheckpointer(tmp_path, "student", save_every=2) as ckpt:
    assert ckpt.saved_steps() == [2, 4, 6]
    restored = ckpt.restore_latest(template)
  assert int(restored.step) == 6
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(restored.params))
  assert _finished_steps(tmp_path / "student" / "output") == []


def _launch(workdir, result, *flags, log):
  env = {
    **os.environ,
    "PYTHONPATH": str(REPO_ROOT),
    # The runs share compiled programs, so the resumed one starts faster.
    "JAX_COMPILATION_CACHE_DIR": str(Path(log.name).parent / "jax_cache"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
  }
  return subprocess.Popen(
    [sys.executable, str(SCRIPT), str(workdir), str(result), *flags],
    cwd=REPO_ROOT,
    env=env,
    stdout=log,
    stderr=subprocess.STDOUT,
  )


def _finished_steps(directory):
  return [int(p.name) for p in directory.glob("*") if p.name.isdigit()]


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
  killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
  with (tmp_path / "log.txt").open("w") as log:
    reference = _launch(reference_dir, tmp_path / "reference.json", log=log)
    victim = _launch(killed_dir, tmp_path / "killed.json", "--slow", log=log)
    checkpoints = killed_dir / "toy" / "checkpoints"
    deadline = time.monotonic() + 120
    while max(_finished_steps(checkpoints), default=0) < 4:
      assert victim.poll() is None, (tmp_path / "log.txt").read_text()
      assert time.monotonic() < deadline, "no checkpoint appeared"
      time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    assert reference.wait(timeout=120) == 0, (tmp_path / "log.txt").read_text()
    assert not (tmp_path / "killed.json").exists()
    assert max(_finished_steps(checkpoints)) < 16
    assert _finished_steps(killed_dir / "toy" / "output") == []

    resumed = _launch(killed_dir, tmp_path / "killed.json", log=log)
    assert resumed.wait(timeout=120) == 0, (tmp_path / "log.txt").read_text()

  killed = json.loads((tmp_path / "killed.json").read_text())
  expected = json.loads((tmp_path / "reference.json").read_text())
  assert expected["start_step"] == 0 and 4 <= killed["start_step"] < 16
  assert killed["best"] == expected["best"]
  np.testing.assert_allclose(killed["final"], expected["final"], rtol=1e-6, atol=1e-7)
  for workdir in (killed_dir, reference_dir):
    _, meta = checkpoint.load_stage_output(workdir, "toy")
    assert meta["step"] == expected["best"]["step"]
