"""A smoke comparison trained once per test session and shared by the methods tests."""

import pytest

from experiments.configs import synthetic_mtpkdot
from mtpkd_jax.comparison import runner
from mtpkd_jax.train import parallel
from tests import cpu_env


def smoke_config(data_dir, **overrides):
  """The synthetic smoke config with the release's frozen joint stage.

  The synthetic config fine-tunes the backbones in the joint stage with modality dropout;
  these tests follow the frozen pipeline (``finetune_test.py`` covers the fine-tuned one,
  ``tests/experiments`` the synthetic config as it ships).
  """
  config = synthetic_mtpkdot.get_config("pain_binary,smoke")
  config.data_dir = str(data_dir)
  config.stages.joint.finetune_backbones = False
  config.stages.joint.modality_dropout = 0.0
  for key, value in overrides.items():
    config[key] = value
  return config


def make_context(config, workdir):
  """Run 0 of ``config`` (fold 0, seed ``config.seed``) inside ``workdir``, on one device."""
  return runner.make_context(config, runner.open_dataset(config), 0, workdir, parallel.make_mesh(1))


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
  """``(config, workdir, results)`` of one smoke comparison of every method family."""
  data_dir = tmp_path_factory.mktemp("tfds")
  workdir = tmp_path_factory.mktemp("comparison")
  config = smoke_config(data_dir, num_devices=1)
  config.methods = ("joint_teacher", "visual_only", "pkdot", "mt_pkdot")
  cpu_env.set_fast_compile(True)  # A training flow; the tests that use it choose their own mode.
  return config, workdir, runner.run(config, workdir)
