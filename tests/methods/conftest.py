"""A smoke comparison trained once per test session and shared by the methods tests."""

import pytest

from experiments.configs import synthetic_mtpkdot
from mtpkd_jax.comparison import runner
from mtpkd_jax.data import pipeline, splits
from mtpkd_jax.methods import evaluation, stages
from mtpkd_jax.train import parallel


def smoke_config(data_dir, **overrides):
  config = synthetic_mtpkdot.get_config("pain_binary,smoke")
  config.data_dir = str(data_dir)
  for key, value in overrides.items():
    config[key] = value
  return config


def make_context(config, workdir, fold=0, seed=0):
  info = pipeline.dataset_info(config.dataset)
  task = evaluation.task_of(info["task"])
  data = pipeline.load(config.dataset, config.data_dir)
  split = splits.subject_folds(
    data["subject"], config.num_folds, fold, config.val_subjects, seed=config.split_seed
  )
  return stages.Context(
    config=config,
    data=data,
    split=split,
    workdir=workdir,
    seed=seed,
    task=task,
    num_outputs=info["num_classes"],
    mesh=parallel.make_mesh(1),
  )


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
  """``(config, workdir, results)`` of one smoke comparison of every method family."""
  data_dir = tmp_path_factory.mktemp("tfds")
  workdir = tmp_path_factory.mktemp("comparison")
  config = smoke_config(data_dir, num_devices=1)
  config.methods = ("joint_teacher", "visual_only", "pkdot", "mt_pkdot")
  return config, workdir, runner.run(config, workdir)
