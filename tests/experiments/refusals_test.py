"""Refusals that need no trained workdir: flags, config arguments, damaged dataset files.

The refusals of a finished workdir (settings, features files, predict inputs, a locked or
read-only workdir, a damaged stage) are in ``features_test.py``; docs/errors.md lists both.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.configs import features, synthetic_cmkt, synthetic_mtpkdot
from mtpkd_jax.comparison import settings
from mtpkd_jax.data.builders.dummy import mosi as dummy
from tests.cpu_env import cpu_env
from tests.data.builders import building

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # Runs the app (it stops at its flags).
def test_an_override_of_no_field_exits_naming_the_flag_and_the_closest_fields(tmp_path):
  command = [
    sys.executable,
    "-m",
    "experiments.train",
    "--config=experiments/configs/features.py:smoke",
    "--config.epochs=3",
    f"--workdir={tmp_path / 'work'}",
  ]
  done = subprocess.run(
    command, cwd=ROOT, env=cpu_env(), capture_output=True, text=True, timeout=300
  )
  assert done.returncode == 1
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith("FATAL Flags parsing error: --config.epochs: the config has no field")
  assert "Did you mean --config.stages.alignment.epochs" in last
  assert not (tmp_path / "work").exists()


@pytest.mark.parametrize(
  "path, message",
  [
    ("epochs", r"the config has no field 'epochs'.*--config.stages.unimodal.epochs"),
    ("stages.joint.epoch", r"`config.stages.joint` has no field 'epoch'.*'epochs'"),
    ("stagse.joint.epochs", r"no field 'stagse'.*Did you mean --config.stages.joint.epochs"),
    ("seed.x", r"`config.seed` is a value \(0\), not a group of fields"),
  ],
)
def test_unknown_fields_are_named_with_the_fields_there(path, message):
  assert re.search(message, settings.unknown_field(features.get_config("smoke"), path))
  assert settings.unknown_field(features.get_config("smoke"), "stages.joint.epochs") is None


def test_smoke_alone_takes_the_configs_default_variant():
  assert synthetic_mtpkdot.get_config("smoke").to_dict() == (
    synthetic_mtpkdot.get_config("pain_binary,smoke").to_dict()
  )
  assert synthetic_cmkt.get_config("smoke").to_dict() == (
    synthetic_cmkt.get_config("sentiment,smoke").to_dict()
  )
  with pytest.raises(ValueError, match=r"variant of \('pain_binary'.*got 'smok'"):
    synthetic_mtpkdot.get_config("smok")


def test_an_encoders_own_width_is_accepted_and_a_kwarg_it_lacks_refused():
  # `kwargs` may set what the config sets for every encoder (`features`, the width).
  config = synthetic_mtpkdot.get_config("smoke")
  with config.unlocked():
    config.encoders.video = {"name": "r3d18", "kwargs": {"features": 16, "stage_sizes": (1, 1)}}
  settings.check_config(config)
  with config.unlocked():
    config.encoders.video.kwargs.stage_size = (1, 1)
  with pytest.raises(ValueError, match=r"`config.encoders.video`: encoder 'r3d18' cannot be"):
    settings.check_config(config)


@pytest.mark.parametrize(
  "name",
  [
    "CMU_MOSI_Opinion_Labels.csd",
    "CMU_MOSI_TimestampedWordVectors.csd",
    "CMU_MOSI_COVAREP.csd",
    "CMU_MOSI_Visual_Facet_41.csd",
    "CMU_MOSI_TimestampedWords.csd",
  ],
)
def test_a_truncated_mosi_file_is_named(tmp_path, name):
  dummy.write(tmp_path / "manual", videos_per_fold=2, segments=3)
  path = tmp_path / "manual" / name
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # A download cut short.
  with pytest.raises(Exception) as error:  # noqa: PT011  (OSError or a bad-files report)
    building.build_and_read(tmp_path / "manual", tmp_path, "mosi/sentiment", {"max_words": 6})
  assert name in str(error.value)
  others = {p.name for p in (tmp_path / "manual").iterdir()} - {name}
  assert not any(f"{other}:" in str(error.value) for other in others)
