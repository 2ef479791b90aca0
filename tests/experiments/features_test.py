"""Your own data end to end: a features file trained through the command, predict, provenance."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments.configs import features as features_config
from mtpkd_jax.comparison import predict, runner
from tests.cpu_env import cpu_env
from tests.features_files import write_features

# Training flows, compared with themselves.
pytestmark = [pytest.mark.fast_compile, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("joint_teacher", "visual_only", "pkd", "pkdot", "mt_pkdot")


def _config(path, data_dir, **overrides):
  config = features_config.get_config("smoke")
  config.features_path = str(path)
  config.data_dir = str(data_dir)
  config.visual, config.privileged = "eda", ("face",)
  config.num_devices = 1  # Parallel runs are tested elsewhere; one device compiles faster.
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
  """A classification file (masked sequence visual, vector privileged) run by the command."""
  root = tmp_path_factory.mktemp("features")
  write_features(root / "f.npz")
  command = [
    sys.executable,
    "-m",
    "experiments.train",
    "--config=experiments/configs/features.py:smoke",
    f"--config.features_path={root / 'f.npz'}",
    "--config.visual=eda",
    "--config.privileged=('face',)",
    f"--config.data_dir={root / 'tfds'}",
    f"--workdir={root / 'work'}",
    "--config.num_devices=1",
  ]
  # The test process's fake devices and XLA flags, so that the in-process runs below find
  # their programs in the disk cache.
  env = cpu_env(devices=jax.device_count())
  done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return root, done.stdout


def test_every_default_method_trains_on_a_features_file(classification):
  root, stdout = classification
  results = json.loads((root / "work" / "results.json").read_text())
  assert results["task"] == "classification"
  assert results["protocol"] == "subject-independent folds"
  assert list(results["runs"][0]["methods"]) == list(METHODS)
  for metrics in results["runs"][0]["methods"].values():
    assert 0 <= metrics["accuracy"] <= 1
  assert "| mt_pkdot |" in stdout


def test_predict_equals_evaluation_and_never_reads_privileged_arrays(classification, tmp_path):
  root, _ = classification
  arrays = dict(np.load(root / "f.npz"))
  (run_dir,) = (root / "work").glob("run0_*")
  saved = np.load(run_dir / "test_outputs.npz")
  test = saved["indices"]
  # Privileged arrays that would fail every check if they were read.
  new = {"x_eda": arrays["x_eda"][test], "mask_eda": arrays["mask_eda"][test]}
  new["x_face"] = np.full((len(test), 5), np.nan, np.float32)
  np.savez(tmp_path / "new.npz", **new)
  for method in ("visual_only", "pkd", "pkdot", "mt_pkdot"):
    out = predict.predict_file(root / "work", method, tmp_path / "new.npz", tmp_path / "p.npz")
    np.testing.assert_allclose(out["outputs"], saved[method], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out["predictions"], saved[method].argmax(-1))
  command = [
    sys.executable,
    "-m",
    "experiments.predict",
    f"--workdir={root / 'work'}",
    "--method=mt_pkdot",
    f"--input={tmp_path / 'new.npz'}",
    f"--output={tmp_path / 'cli.npz'}",
  ]
  done = subprocess.run(
    command, cwd=ROOT, env=cpu_env(), capture_output=True, text=True, timeout=300
  )
  assert done.returncode == 0, done.stderr[-3000:]
  cli = np.load(tmp_path / "cli.npz")
  np.testing.assert_allclose(cli["outputs"], saved["mt_pkdot"], rtol=1e-5, atol=1e-6)
  assert list(cli["class_names"]) == ["low", "high"]
  with pytest.raises(ValueError, match="privileged modalities at test time"):
    predict.predict_file(root / "work", "joint_teacher", tmp_path / "new.npz", tmp_path / "p.npz")
  np.savez(tmp_path / "short.npz", x_eda=arrays["x_eda"][:4, :3])
  with pytest.raises(ValueError, match=r"short\.npz: key 'x_eda' must be \[N, 6, 3\]"):
    predict.predict_file(root / "work", "pkd", tmp_path / "short.npz", tmp_path / "p.npz")


def test_a_changed_stage_config_retrains_what_depends_on_it(classification):
  root, _ = classification
  work = root / "work"
  (run_dir,) = work.glob("run0_*")
  config = _config(root / "f.npz", root / "tfds", methods=("visual_only", "mt_pkdot"))
  runner.run(config, work)  # Unchanged: every stage is reused.
  assert not list(run_dir.glob("*.stale"))
  config.stages.joint.learning_rate = 3e-3
  runner.run(config, work)
  stale = sorted(p.name for p in run_dir.glob("*.stale"))
  assert stale == ["alignment.stale", "joint.stale", "student_mt_pkdot.stale"]
  record = json.loads((run_dir / "joint" / "provenance.json").read_text())
  assert record["config"]["stage"]["learning_rate"] == 3e-3


@pytest.mark.parametrize("num_targets", [1, 3])
def test_regression_with_one_and_three_targets(tmp_path, num_targets):
  # One target without subject ids: folds are drawn over examples, and the results say so.
  subject = {"subject": None} if num_targets == 1 else {}
  write_features(tmp_path / "f.npz", task="regression", num_targets=num_targets, **subject)
  # The visual model and MT-PKDOT, which trains every stage; `tests/methods/stages_test.py`
  # trains each student on regression targets.
  config = _config(tmp_path / "f.npz", tmp_path / "tfds", methods=("visual_only", "mt_pkdot"))
  results = runner.run(config, tmp_path / "work")
  names = [f"ccc_dim{k}" for k in range(num_targets)]
  assert results["metrics"] == [*names, "ccc_mean"]
  expected = "folds over examples" if num_targets == 1 else "subject-independent folds"
  assert results["protocol"].startswith(expected)
  assert list(results["runs"][0]["methods"]) == list(config.methods)
  for metrics in results["runs"][0]["methods"].values():
    assert set(metrics) == {*names, "ccc_mean"}
    assert all(np.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(visual="eda_"), r"`config.visual` names 'eda_'.*\['eda', 'face'\]"),
    (dict(privileged=("fcae",)), r"`config.privileged` names 'fcae'"),
    (dict(privileged=()), r"`config.privileged` is empty"),
    (dict(val_subjects=0.9), r"cannot split the dataset.*`val_subjects`=0.9"),
    (dict(num_folds=7), r"cannot split the dataset.*`num_folds`=7"),
    (dict(scoring="frames"), r"`config.scoring` must be one of \['clip', 'frame'\]"),
    (dict(scoring="frame"), r"`config.scoring`='frame'.*has no \['frame_targets'"),
    (dict(scoring="frame", metrics="sentiment"), r"`config.metrics` must be 'default'"),
  ],
)
def test_bad_roles_and_folds_stop_before_training_and_lose_nothing(tmp_path, overrides, message):
  write_features(tmp_path / "f.npz")
  work = tmp_path / "work"
  work.mkdir()
  (work / "results.json").write_text("{}")
  with pytest.raises(ValueError, match=message) as error:
    runner.run(_config(tmp_path / "f.npz", tmp_path / "tfds", **overrides), work)
  assert "f.npz" in str(error.value)
  assert sorted(p.name for p in work.iterdir()) == ["results.json"]
