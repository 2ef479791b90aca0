"""The run context: encoders built from the config (or the field named), stage provenance."""

import copy
import dataclasses

import pytest

from mtpkd_jax.methods import graph
from mtpkd_jax.train import parallel, provenance
from tests.methods.conftest import make_context, smoke_config


def test_an_encoder_given_kwargs_it_does_not_take_names_the_config_field(tmp_path):
  config = smoke_config(tmp_path / "tfds")
  config.encoders.video.name = "cnn3d_small"  # Keeps the frame transformer's kwargs.
  ctx = make_context(config, tmp_path / "run")
  assert ctx.encoder("physio") is not None
  with pytest.raises(
    ValueError, match=r"'cnn3d_small' of modality 'video' .*`config\.encoders\.video`"
  ):
    ctx.encoder("video")


@pytest.mark.parametrize("finetune", [False, True])
def test_a_fine_tuned_joint_stage_records_where_its_tnets_come_from(
  tmp_path, monkeypatch, finetune
):
  # Joint stages saved before their T-Nets came from the best-score step lack the key, so a
  # reused workdir retrains them; frozen ones are unchanged.
  config = smoke_config(tmp_path / "tfds")
  config.stages.joint.finetune_backbones = finetune
  ctx = make_context(config, tmp_path / "run")
  monkeypatch.setattr(provenance, "output_fingerprint", lambda *args, **kwargs: "predecessor")
  record = ctx.provenance(graph.stage(graph.Roles.of(ctx), "joint"))
  assert record["config"].get("tnets_from") == ("best_score_step" if finetune else None)
  before = copy.deepcopy(record)
  before["config"].pop("tnets_from", None)
  provenance.ensure(ctx.workdir, "joint", before)
  changed = provenance.ensure(ctx.workdir, "joint", record)
  assert changed == (["config.tnets_from"] if finetune else [])


def test_a_split_smaller_than_a_batch_trains_on_batches_of_the_whole_split(tmp_path):
  config = smoke_config(tmp_path / "tfds")
  ctx = make_context(config, tmp_path / "run")
  num_train = len(ctx.split["train"])
  assert ctx.batch_size("student") == config.stages.student.batch_size < num_train
  small = dataclasses.replace(ctx, split={**ctx.split, "train": ctx.split["train"][:5]})
  assert small.batch_size("student") == 5
  four = dataclasses.replace(small, mesh=parallel.make_mesh(4))
  assert four.batch_size("student") == 4  # A multiple of the devices.
