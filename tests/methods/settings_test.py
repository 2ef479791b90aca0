"""Stage settings: ``config.stages`` typed once, every bad entry named by its flag."""

import dataclasses

import pytest

from experiments.configs import (
  affwild2,
  biovid,
  features,
  mosi,
  recola,
  synthetic_cmkt,
  synthetic_mtpkdot,
)
from mtpkd_jax.methods import settings
from mtpkd_jax.train import stage as stage_lib


@pytest.mark.parametrize(
  "config",
  [synthetic_mtpkdot.get_config(), synthetic_cmkt.get_config("smoke"), features.get_config()],
)
def test_the_settings_are_the_config_sections_typed(config):
  stages = settings.stages_from_config(config)
  for field in dataclasses.fields(stages):
    section = config.stages[field.name].to_dict()
    typed = dataclasses.asdict(getattr(stages, field.name))
    assert typed == {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
  assert isinstance(stages.joint.tnet_hidden, tuple)


@pytest.mark.parametrize(
  "path, value, message",
  [
    ("unimodal.epochs", 0, r"`config.stages.unimodal.epochs` must be an integer >= 1, got 0"),
    ("student.batch_size", 2.5, r"stages.student.batch_size` must be an integer >= 1"),
    ("cmkt.learning_rate", 0.0, r"stages.cmkt.learning_rate` must be a number > 0, got 0.0"),
    ("joint.modality_dropout", 1.0, r"modality_dropout` must be a number in \[0, 1\), got 1.0"),
    ("joint.tnet_loss", "l2", r"tnet_loss` must be one of \('mse', 'mmd'\), got 'l2'"),
    ("joint.tnet_hidden", (64, 0), r"tnet_hidden` must be a tuple of integers >= 1"),
    ("joint.finetune_backbones", 1, r"finetune_backbones` must be true or false, got 1"),
    ("alignment.fusion_learning_rate", -1e-4, r"fusion_learning_rate` must be a number > 0"),
  ],
)
def test_a_bad_entry_is_named_with_its_flag(path, value, message):
  config = synthetic_mtpkdot.get_config("smoke")
  kind, key = path.split(".")
  # The section replaced whole: a config's fields keep their type, a section's entries may not.
  config.stages[kind] = {**config.stages[kind].to_dict(), key: value}
  with pytest.raises(ValueError, match=message) as error:
    settings.stages_from_config(config)
  assert f"set --config.stages.{path} (nothing was trained or moved)" in str(error.value)


def test_a_missing_or_unknown_entry_is_named():
  config = synthetic_mtpkdot.get_config("smoke")
  with config.unlocked():
    config.stages.student.epoch = 3
  with pytest.raises(ValueError, match=r"`config.stages.student.epoch` must be one of the known"):
    settings.stages_from_config(config)
  config = synthetic_mtpkdot.get_config("smoke")
  with config.unlocked():
    del config.stages.alignment["fusion_learning_rate"]
  with pytest.raises(ValueError, match=r"stages.alignment.fusion_learning_rate` must be set"):
    settings.stages_from_config(config)


@pytest.mark.parametrize(
  "epochs, min_steps, epoch_steps, passes",
  [(15, 100, 1, 100), (15, 100, 3, 34), (15, 100, 8, 15), (2, 0, 3, 2), (1, 12, 4, 3)],
)
def test_a_small_split_takes_whole_epochs_up_to_the_fewest_steps(
  epochs, min_steps, epoch_steps, passes
):
  assert stage_lib.num_epochs(epochs, min_steps, epoch_steps) == passes


TRAINING_CONFIGS = [
  (module, arg)
  for module in (synthetic_mtpkdot, synthetic_cmkt, features, biovid, recola, mosi, affwild2)
  for arg in (None, "smoke")
]


@pytest.mark.parametrize("module, arg", TRAINING_CONFIGS)
def test_every_stage_trains_at_least_its_fewest_steps_at_any_size(module, arg):
  """From one batch of training examples up, no default stage takes fewer steps than 90."""
  stages = settings.stages_from_config(module.get_config(arg))
  for field in dataclasses.fields(stages):
    cfg = getattr(stages, field.name)
    for num_train in (cfg.batch_size, 100, 3_000):
      epoch_steps = num_train // cfg.batch_size
      steps = stage_lib.num_epochs(cfg.epochs, cfg.min_steps, epoch_steps) * epoch_steps
      assert steps >= (2 * epoch_steps if arg else 90), (field.name, num_train)
