"""Each real dataset's `smoke` config trains end to end through the command, on dummy files."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.configs import affwild2, biovid, mosi, recola
from mtpkd_jax.models import convert_torchvision
from tests.cpu_env import cpu_env

pytestmark = pytest.mark.slow  # Trains each dataset's smoke config through the app.

ROOT = Path(__file__).resolve().parents[2]


def _train(tmp_path, config, *flags):
  """``experiments.train`` on ``config``, one stage-0 epoch: its output and results."""
  command = [
    sys.executable,
    "-m",
    "experiments.train",
    f"--config=experiments/configs/{config}",
    f"--config.data_dir={tmp_path / 'tfds'}",
    "--config.stages.unimodal.epochs=1",
    *flags,
    f"--workdir={tmp_path / 'work'}",
  ]
  done = subprocess.run(
    command, cwd=ROOT, env=cpu_env(), capture_output=True, text=True, timeout=600
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return done, json.loads((tmp_path / "work" / "results.json").read_text())


@pytest.mark.parametrize(
  "config, protocol",
  [
    ("biovid.py:part_b_5class,smoke", "subject-independent folds"),
    ("recola.py:valence,smoke", "official split"),
    ("mosi.py:binary,smoke", "official split"),
    ("affwild2.py:va,smoke", "official split"),
  ],
)
def test_smoke_config_trains_through_the_command_on_dummy_files(tmp_path, config, protocol):
  # The visual student only: the stages after it are dataset-agnostic and tested elsewhere;
  # what is tested here is the dataset's way from files to a scored model.
  done, results = _train(tmp_path, config, "--config.methods=('visual_only',)")
  assert results["protocol"].startswith(protocol)
  # Aff-Wild2 is scored over its annotated frames, the others over their examples.
  assert results["scoring"].startswith("frame" if "affwild2" in config else "clip")
  assert f"scored per {results['scoring']}" in done.stdout
  (metrics,) = results["runs"][0]["methods"].values()
  assert metrics and all(-1 <= v <= 1 for v in metrics.values())
  assert "| visual_only |" in done.stdout
  split = json.loads(next((tmp_path / "work").glob("run0*/split.json")).read_text())
  assert split["train"] and split["val"] and split["test"]


def test_the_mosi_cmkt_smoke_config_trains_through_the_command_on_dummy_files(tmp_path):
  flags = ("--config.methods=('cmkt',)", "--config.baseline=cmkt", "--config.stages.cmkt.epochs=1")
  _, results = _train(tmp_path, "mosi.py:sentiment,cmkt,smoke", *flags)
  (metrics,) = results["runs"][0]["methods"].values()
  assert set(metrics) == {"acc_2", "f1_2", "mae", "corr", "acc_7"}
  assert all(np.isfinite(v) for v in metrics.values())
  stages = {p.name for p in next((tmp_path / "work").glob("run0*")).iterdir() if p.is_dir()}
  assert stages == {"unimodal_text", "cmkt_cmkt"}


@pytest.mark.parametrize(
  "module, arg, weak, strong",
  [
    (mosi, "sentiment,cmkt", "audio", "text"),
    (recola, "arousal,cmkt", "video_appearance", "audio"),
    (recola, "valence,cmkt", "audio", "video_appearance"),
  ],
)
def test_cmkt_configs_name_the_weak_and_strong_modalities(module, arg, weak, strong):
  config = module.get_config(arg)
  assert (config.visual, config.strong, tuple(config.privileged)) == (weak, strong, (strong,))
  assert config.baseline == f"{weak}_only" and "cmkt" in config.methods


@pytest.mark.parametrize(
  "module,arg",
  [(biovid, "part_b_5class,loso"), (recola, "valence"), (mosi, "sentiment"), (affwild2, "va")],
)
def test_configs_name_their_dataset_and_roles(module, arg):
  config = module.get_config(arg)
  assert config.dataset.split("/")[0] == module.__name__.rsplit(".", 1)[1]
  assert config.visual not in config.privileged and config.privileged


def test_a_bad_config_argument_names_the_variants():
  with pytest.raises(ValueError, match="part_a_binary"):
    biovid.get_config("part_c")


def test_biovid_video_resnets_take_kinetics_pixels_and_an_empty_pretrained_switch():
  assert biovid.get_config("part_a_binary").encoders.video.pretrained == ""
  config = biovid.get_config("part_a_binary,r2plus1d18")
  spec = config.encoders.video
  assert spec.name == "r2plus1d18" and spec.pretrained == ""
  assert config.embed_dim == 512  # The converted weights' width, which every modality shares.
  assert spec.kwargs.pixel_mean == convert_torchvision.KINETICS_MEAN
  assert spec.kwargs.pixel_std == convert_torchvision.KINETICS_STD
  with pytest.raises(ValueError, match="one video ResNet"):
    biovid.get_config("part_a_binary,r3d18,r2plus1d18")
