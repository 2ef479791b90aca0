"""Your own data end to end: a features file trained through the command, predict, provenance."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments.configs import features as features_config
from mtpkd_jax.comparison import predict, runner
from mtpkd_jax.comparison import workdir as workdir_lib
from mtpkd_jax.train import checkpoint
from tests.cpu_env import cpu_env
from tests.data import features_test
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


def _digests(root: Path) -> dict[str, str]:
  """Every file under ``root`` by relative path, with a digest of its bytes."""
  return {
    str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
    for p in sorted(root.rglob("*"))
    if p.is_file()
  }


def _huge_header(path: Path) -> None:
  """A features file whose ``x_face`` header declares 1.9 TiB (its data is 20 floats)."""
  arrays = write_features(path)
  header = io.BytesIO()
  np.lib.format.write_array_header_1_0(
    header, {"descr": "<f4", "fortran_order": False, "shape": (10**11, 5)}
  )
  with zipfile.ZipFile(path, "w") as archive:
    for key, value in ((k, v) for k, v in arrays.items() if k != "x_face"):
      buffer = io.BytesIO()
      np.save(buffer, value)
      archive.writestr(f"{key}.npy", buffer.getvalue())
    archive.writestr("x_face.npy", header.getvalue() + bytes(80))


def _flag(**overrides):
  """Reruns the finished workdir with ``overrides`` (dotted fields, as ``--config.<f>=...``)."""

  def action(root, tmp_path):
    del tmp_path
    config = _config(root / "f.npz", root / "tfds")
    for key, value in overrides.items():
      *groups, field = key.split(".")
      node = config
      for group in groups:
        node = node[group]
      node[field] = value
    runner.run(config, root / "work")

  return action


def _file(write=None, task=None, **arrays):
  """Reruns the finished workdir on a bad features file (``write(path)``, or these arrays)."""

  def action(root, tmp_path):
    path = tmp_path / "bad.npz"
    if write:
      write(path)
    else:
      written = write_features(path)
      np.savez(path, **{k: v for k, v in {**written, **arrays}.items() if v is not None})
    try:
      runner.run(_config(path, tmp_path / "tfds", task=task), root / "work")
    except ValueError as error:
      assert str(path) in str(error)  # The file is named.
      raise

  return action


def _predict(method="mt_pkdot", run=0, **arrays):
  """Predicts with the finished workdir on an input of ``arrays``; nothing may be written."""

  def action(root, tmp_path):
    np.savez(tmp_path / "new.npz", **arrays)
    try:
      predict.predict_file(root / "work", method, tmp_path / "new.npz", tmp_path / "p.npz", run)
    finally:
      assert not (tmp_path / "p.npz").exists()

  return action


_GOOD_X = np.zeros((4, 6, 3), np.float32)
# Every bad input a user may give a finished workdir: config settings (as `--config.<field>`
# would set them), features files, predict inputs. Each is refused with a message that names
# the field, key or file, and the workdir is left as it was. docs/errors.md lists them.
REFUSALS = {
  # Settings: checked before anything is moved (mtpkd_jax/comparison/settings.py).
  "epochs -1": (_flag(**{"stages.unimodal.epochs": -1}), r"`config.stages.unimodal.epochs`"),
  "epochs 0": (_flag(**{"stages.student.epochs": 0}), r"`config.stages.student.epochs` must"),
  "batch size 0": (_flag(**{"stages.joint.batch_size": 0}), r"`config.stages.joint.batch_size`"),
  "learning rate 0": (_flag(**{"stages.joint.learning_rate": 0.0}), r"learning_rate` must be"),
  "num_folds 0": (_flag(num_folds=0), r"`config.num_folds` must be an integer >= 1, got 0"),
  "num_runs 0": (_flag(num_runs=0), r"`config.num_runs` must be an integer >= 1"),
  "compute_dtype float8": (
    _flag(compute_dtype="float8"),
    r"`config.compute_dtype` must be one of \('float32', 'bfloat16'\), got 'float8'",
  ),
  "dropout 1.5": (_flag(dropout_rate=1.5), r"`config.dropout_rate` must be a number in \[0, 1\)"),
  "unknown encoder": (
    _flag(**{"encoders_by_kind.vector.name": "mpl"}),
    r"`config.encoders_by_kind.vector`: encoder 'mpl'.*known: .*mlp",
  ),
  "encoder kwarg typo": (
    _flag(**{"encoders_by_kind.vector.kwargs": {"hiden": 8}}),
    r"`config.encoders_by_kind.vector`: .*unexpected keyword argument 'hiden'",
  ),
  "encoder kwargs that do not fit the inputs": (
    _flag(**{"encoders_by_kind.sequence.kwargs": {"num_layers": 1, "num_heads": 3}}),
    r"encoder of modality 'eda'.*divisible by number of heads.*`config.encoders_by_kind.sequence`",
  ),
  "unknown method": (_flag(methods=("visual_only", "mt_pkdto")), r"Unknown method 'mt_pkdto'"),
  "visual typo": (_flag(visual="eda_"), r"`config.visual` names 'eda_'"),
  "too many folds": (_flag(num_folds=7), r"cannot split the dataset.*`num_folds`=7"),
  # Features files: refused by their checks (mtpkd_jax/data/features.py) before any build;
  # every check of the format's own table follows (tests/data/features_test.py).
  "huge header": (_file(_huge_header), r"'x_face' declares float32 \[100000000000, 5\].*cut short"),
  "one class": (_file(y=np.zeros(48, int), class_names=None), r"'y' holds one class \('class0'\)"),
  "one example": (
    _file(lambda path: write_features(path, num_subjects=1, per_subject=1)),
    r"holds 1 example\(s\) \(N = 1\).*3 examples or more",
  ),
  "mask on a vector": (
    _file(mask_face=np.ones((48, 5), bool)),
    r"'mask_face' masks the steps of a sequence, but 'x_face' is a vector \[48, 5\]",
  ),
  "not an npz": (_file(lambda path: path.write_text("x_face,y\n1,0\n")), r"not an \.npz file"),
  **{
    f"file: {name}": (_file(task=task, **extra), message)
    for name, (extra, task, message) in features_test.BAD_INPUTS.items()
  },
  # Predict inputs (mtpkd_jax/comparison/predict.py).
  "predict on no example": (_predict(x_eda=_GOOD_X[:0]), r"'x_eda' holds no example \(N = 0\)"),
  "predict without the visual key": (_predict(x_face=np.zeros((4, 5))), r"no key 'x_eda'"),
  "predict on a bad mask": (
    _predict(x_eda=_GOOD_X, mask_eda=np.ones((4, 5), bool)),
    r"key 'mask_eda' must be bool \[4, 6\] \(the valid steps of 'x_eda'\), got bool \[4, 5\]",
  ),
  "predict on the wrong shape": (_predict(x_eda=_GOOD_X[:, :3]), r"'x_eda' must be \[N, 6, 3\]"),
  "predict on NaN": (_predict(x_eda=_GOOD_X + np.nan), r"'x_eda' holds NaN or Inf"),
  "predict a method not trained": (
    _predict("rkd", x_eda=_GOOD_X),
    r"lists the methods .*not 'rkd'",
  ),
  "predict a run not trained": (_predict(run=3, x_eda=_GOOD_X), r"gives runs 0 to 0, not run 3"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_every_refusal_names_its_input_and_leaves_the_workdir_as_it_was(
  classification, tmp_path, case
):
  root, _ = classification
  action, message = REFUSALS[case]
  before = _digests(root / "work")
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    action(root, tmp_path)
  assert _digests(root / "work") == before


def test_a_second_training_in_the_same_workdir_is_refused(classification):
  root, _ = classification
  work = root / "work"
  before = _digests(work)
  with workdir_lib.lock(work):  # A training that is running there.
    with pytest.raises(RuntimeError, match=rf"--workdir {work} is in use by another training"):
      runner.run(_config(root / "f.npz", root / "tfds"), work)
  assert _digests(work) == before


def test_a_read_only_workdir_stops_at_once_naming_it(classification, monkeypatch):
  root, _ = classification
  work = root / "work"
  (run_dir,) = work.glob("run0_*")
  read_only = run_dir / "joint"
  before = _digests(work)
  if os.geteuid() == 0:  # Root writes anywhere: answer as a read-only disk would.
    monkeypatch.setattr(workdir_lib.os, "access", lambda path, mode: Path(path) != read_only)
  else:
    read_only.chmod(0o555)
  try:
    with pytest.raises(PermissionError, match=rf"{read_only} is read-only"):
      runner.run(_config(root / "f.npz", root / "tfds"), work)
  finally:
    read_only.chmod(0o755)
  assert _digests(work) == before


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_damaged_stage_output_is_named_with_the_folder_to_delete(classification, tmp_path):
  root, _ = classification
  work = tmp_path / "work"
  shutil.copytree(root / "work", work, ignore=shutil.ignore_patterns("jax_cache"))
  (run_dir,) = work.glob("run0_*")
  for path in (run_dir / "unimodal_eda" / "output").rglob("d/*"):
    path.write_bytes(bytes(path.stat().st_size))  # A disk that lost the writes.
  expected = rf"Stage 'unimodal_eda': its saved output {run_dir}/unimodal_eda/output/\d+ is damaged"
  remedy = rf"Delete \(or move away\) {run_dir / 'unimodal_eda'} and rerun"
  with pytest.raises(checkpoint.DamagedCheckpointError, match=rf"(?s){expected}.*{remedy}"):
    predict.predict_file(work, "visual_only", root / "f.npz", tmp_path / "p.npz")
  with pytest.raises(checkpoint.DamagedCheckpointError, match=rf"(?s){expected}.*{remedy}"):
    runner.run(_config(root / "f.npz", root / "tfds"), work)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_damaged_newest_checkpoint_resumes_from_the_previous_step_to_the_same_model(
  tmp_path, caplog
):
  write_features(tmp_path / "f.npz")
  config = _config(
    tmp_path / "f.npz", tmp_path / "tfds", methods=("visual_only",), checkpoint_every=2
  )
  runner.run(config, tmp_path / "work")
  (run_dir,) = (tmp_path / "work").glob("run0_*")
  stage = run_dir / "unimodal_eda"
  shutil.copytree(stage / "checkpoints" / "6", tmp_path / "step6")
  # A machine that died while writing the last checkpoint: no output, the newest step zeroed.
  shutil.rmtree(stage / "output")
  for path in (stage / "checkpoints" / "6").rglob("d/*"):
    path.write_bytes(bytes(path.stat().st_size))
  runner.run(config, tmp_path / "work")
  assert "checkpoint step 6 is damaged" in caplog.text and "resuming from step 4" in caplog.text
  assert (stage / "damaged" / "checkpoints" / "6").is_dir()
  # Steps 5 and 6 trained again from step 4 give the state the first run saved at step 6.
  restore = ocp.StandardCheckpointer().restore
  again, first = (
    restore(stage / "checkpoints" / "6" / "state"),
    restore(tmp_path / "step6" / "state"),
  )
  assert int(again["step"]) == 6
  jax.tree.map(np.testing.assert_array_equal, again, first)
