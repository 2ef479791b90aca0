"""Predict on a video run: the run's test outputs from its uint8 clips, from the config's run."""

import json
import os

import numpy as np
import pytest

from mtpkd_jax.comparison import predict, runner

# Compared with what the fast-compiled fixture evaluated.
pytestmark = [pytest.mark.fast_compile, pytest.mark.slow]

METHODS = ("visual_only", "pkdot", "mt_pkdot")


def _test_clips(config, workdir, path):
  """Writes the stored clips of run 0's test split to ``path``; returns its saved outputs."""
  saved = np.load(workdir / "run0_fold0_seed0" / "test_outputs.npz")
  video = runner.open_dataset(config).table.take(saved["indices"], ["video"])["video"]
  assert video.dtype == np.uint8  # Every video dataset stores uint8 pixels.
  np.savez(path, x_video=video)
  return saved, video


def _rerun(workdir, work, **changes):
  """``work``, as if trained again with ``changes``: its ``config.json`` is the later run's."""
  work.mkdir()
  config = json.loads((workdir / "config.json").read_text()) | changes
  (work / "config.json").write_text(json.dumps(config))
  (work / "schema.json").write_text((workdir / "schema.json").read_text())
  return work


def test_predict_on_stored_uint8_clips_equals_the_runs_test_outputs(trained, tmp_path):
  config, workdir, _ = trained
  saved, video = _test_clips(config, workdir, tmp_path / "clips.npz")
  for method in METHODS:
    out = predict.predict_file(workdir, method, tmp_path / "clips.npz", tmp_path / "p.npz")
    np.testing.assert_allclose(out["outputs"], saved[method], rtol=1e-5, atol=1e-6)
  # Float pixels would reach the encoder unscaled: refused, not cast.
  np.savez(tmp_path / "float.npz", x_video=video.astype(np.float32))
  with pytest.raises(ValueError, match=r"float\.npz: key 'x_video' must be uint8 as in training"):
    predict.predict_file(workdir, "visual_only", tmp_path / "float.npz", tmp_path / "p.npz")
  np.savez(tmp_path / "wide.npz", x_video=video.astype(np.uint16) + 255)
  with pytest.raises(ValueError, match=r"wide\.npz: key 'x_video' holds values outside uint8"):
    predict.predict_file(workdir, "visual_only", tmp_path / "wide.npz", tmp_path / "p.npz")


def test_predict_serves_the_run_config_json_names_not_an_earlier_one(trained, tmp_path):
  config, workdir, _ = trained
  saved, _ = _test_clips(config, workdir, tmp_path / "clips.npz")
  work = _rerun(workdir, tmp_path / "seed7", seed=7)
  # The run the config names, and an earlier run's folder (empty: reading it fails), sorted first.
  os.symlink(workdir / "run0_fold0_seed0", work / "run0_fold0_seed7")
  (work / "run0_fold0_seed0").mkdir()
  out = predict.predict_file(work, "visual_only", tmp_path / "clips.npz", tmp_path / "p.npz")
  np.testing.assert_allclose(out["outputs"], saved["visual_only"], rtol=1e-5, atol=1e-6)
  work = _rerun(workdir, tmp_path / "seed3", seed=3)
  (work / "run0_fold0_seed0").mkdir()
  message = r"run0_fold0_seed3 is missing: .*config\.json \(seed 3, 3 folds\).*run0_fold0_seed0"
  with pytest.raises(FileNotFoundError, match=message):
    predict.load_context(work)
  with pytest.raises(FileNotFoundError, match=r"config\.json gives runs 0 to 0, not run 1"):
    predict.load_context(workdir, run=1)


def test_a_method_the_latest_config_json_does_not_list_is_refused_saying_why(trained, tmp_path):
  _, workdir, _ = trained
  work = _rerun(workdir, tmp_path / "work", methods=["visual_only"])
  os.symlink(workdir / "run0_fold0_seed0", work / "run0_fold0_seed0")
  message = (
    r"work/config\.json lists the methods and candidates \['visual_only'\], not 'mt_pkdot'\. "
    r"If 'mt_pkdot' was trained earlier in this workdir, a later `experiments.train` run there "
    r"with other methods replaced that config\.json"
  )
  with pytest.raises(ValueError, match=message):
    predict.predict_file(work, "mt_pkdot", tmp_path / "unused.npz", tmp_path / "p.npz")


def test_predict_serves_every_candidate_of_a_tuned_method(trained, tmp_path):
  config, workdir, _ = trained
  saved, _ = _test_clips(config, workdir, tmp_path / "clips.npz")
  # A run that tuned `pkdot:anchors=most` over itself and `pkdot` (which the fixture trained).
  tune = {"pkdot:anchors=most": ["pkdot:anchors=most", "pkdot"]}
  work = _rerun(workdir, tmp_path / "tuned", methods=["pkdot:anchors=most"], tune=tune)
  os.symlink(workdir / "run0_fold0_seed0", work / "run0_fold0_seed0")
  out = predict.predict_file(work, "pkdot", tmp_path / "clips.npz", tmp_path / "p.npz")
  np.testing.assert_allclose(out["outputs"], saved["pkdot"], rtol=1e-5, atol=1e-6)
