"""Stage 0 starts its encoder from the ``pretrained`` file its config entry names."""

import jax
import numpy as np
import pytest

from mtpkd_jax.data import pipeline
from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data import table as table_lib
from mtpkd_jax.methods import context, unimodal
from mtpkd_jax.models import video
from mtpkd_jax.train import parallel
from mtpkd_jax.train import variables as variables_lib
from tests.methods.conftest import smoke_config

CLIP = (4, 16, 16, 3)


def _context(tmp_path, pretrained: str, features: int = 16):
  config = smoke_config(tmp_path / "tfds")
  # Two one-block stages: the R3D-18 layout (stem, BatchNorm, shortcut) at a fraction of it.
  kwargs = {"features": features, "stage_sizes": (1, 1)}
  config.encoders.video = {"name": "r3d18", "kwargs": kwargs}
  config.encoders.video.pretrained = pretrained
  schema = schema_lib.Schema(
    (schema_lib.Modality("video", "video", CLIP),), schema_lib.Task("classification", ("a", "b"))
  )
  clips = np.random.default_rng(0).integers(0, 256, (2, *CLIP), dtype=np.uint8)
  dataset = pipeline.Dataset(
    name="clips",
    description="clips",
    schema=schema,
    table=table_lib.ArrayTable({"video": clips}),
    y=np.zeros(2, np.int32),
    subject=None,
    split=None,
    fingerprint="clips",
    in_memory=True,
    extra=None,
  )
  return context.Context(config, schema, dataset, {}, tmp_path, 0, parallel.make_mesh(1))


def _write_encoder_file(path, features: int = 16) -> dict:
  """Random variables of the context's encoder at width ``features``, written as ``.npz``."""
  clip = jax.ShapeDtypeStruct((1, *CLIP), np.uint8)
  encoder = video.R3D18(features=features, stage_sizes=(1, 1))
  shapes = jax.eval_shape(encoder.init, jax.random.key(0), clip)
  rng = np.random.default_rng(1)
  values = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)
  variables_lib.save_npz(path, values)
  return values


def test_stage0_starts_from_the_pretrained_file(tmp_path):
  values = _write_encoder_file(tmp_path / "r3d.npz")
  ctx = _context(tmp_path, str(tmp_path / "r3d.npz"))
  model = unimodal.unimodal_model(ctx, "video")
  variables = unimodal.initial_variables(ctx, "video", model)
  assert variables.keys() == {"params", "batch_stats"}
  for collection, tree in values.items():
    jax.tree.map(np.testing.assert_array_equal, variables[collection]["encoder"], tree)
  # The head is the fresh one, and without the switch the encoder is random too.
  fresh = unimodal.initial_variables(_context(tmp_path, ""), "video", model)
  jax.tree.map(np.testing.assert_array_equal, variables["params"]["head"], fresh["params"]["head"])
  kernel = fresh["params"]["encoder"]["stem"]["kernel"]
  assert not np.allclose(kernel, values["params"]["stem"]["kernel"])


def test_a_pretrained_file_that_does_not_fit_is_named(tmp_path):
  _write_encoder_file(tmp_path / "wide.npz", features=32)
  ctx = _context(tmp_path, str(tmp_path / "wide.npz"))
  model = unimodal.unimodal_model(ctx, "video")
  shape = r"batch_stats/stages/stage1_block1/bn1/mean has shape \(16,\), expected \(8,\)"
  with pytest.raises(ValueError, match=rf"wide\.npz does not fit .*: {shape}; .* and 22 more"):
    unimodal.initial_variables(ctx, "video", model)
  ctx = _context(tmp_path, str(tmp_path / "absent.npz"))
  with pytest.raises(FileNotFoundError, match=r"'video'.*absent\.npz"):
    unimodal.initial_variables(ctx, "video", model)


def test_stage0_provenance_follows_the_pretrained_files_content(tmp_path):
  path = tmp_path / "r3d.npz"
  _write_encoder_file(path)
  ctx = _context(tmp_path, str(path))
  record = ctx.provenance(context.Stage("unimodal", "video"))
  assert record["config"]["encoder"]["pretrained"] == str(path)
  variables_lib.save_npz(path, {"params": {"stem": {"kernel": np.zeros(1)}}})
  again = ctx.provenance(context.Stage("unimodal", "video"))
  assert again["config"]["pretrained_digest"] != record["config"]["pretrained_digest"]
  random_weights = _context(tmp_path, "").provenance(context.Stage("unimodal", "video"))
  assert "pretrained_digest" not in random_weights["config"]
