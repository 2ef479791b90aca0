"""A real dataset's config trains end to end on its generated dummy files."""

import json

import pytest

from experiments.configs import biovid, mosi, recola
from mtpkd_jax.comparison import runner


def test_mosi_smoke_trains_mt_pkdot_on_dummy_computational_sequences(tmp_path):
  config = mosi.get_config("binary,smoke")
  config.data_dir = str(tmp_path / "tfds")
  config.methods = ("visual_only", "mt_pkdot")
  results = runner.run(config, str(tmp_path / "work"))
  assert results["protocol"] == "official split"
  metrics = results["runs"][0]["methods"]
  assert set(metrics) == {"visual_only", "mt_pkdot"}
  assert all(0 <= m["accuracy"] <= 1 for m in metrics.values())
  split = json.loads(next((tmp_path / "work").glob("run0*/split.json")).read_text())
  assert split["test"] and split["val"]


@pytest.mark.parametrize(
  "module,arg", [(biovid, "part_b_5class,loso"), (recola, "valence"), (mosi, "sentiment")]
)
def test_configs_name_their_dataset_and_roles(module, arg):
  config = module.get_config(arg)
  assert config.dataset.split("/")[0] == module.__name__.rsplit(".", 1)[1]
  assert config.visual not in config.privileged and config.privileged


def test_a_bad_config_argument_names_the_variants():
  with pytest.raises(ValueError, match="part_a_binary"):
    biovid.get_config("part_c")
