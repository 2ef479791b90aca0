"""Fixtures shared by the data tests: the `tiny` config, built once per session."""

import pytest

from mtpkd_jax.data import pipeline

TINY = "synthetic_affect/tiny"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
  """A TFDS data directory holding a built `synthetic_affect/tiny`."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  pipeline.builder(TINY, data_dir).download_and_prepare()
  return data_dir


@pytest.fixture(scope="session")
def tiny(tiny_dir):
  """`synthetic_affect/tiny` loaded into memory."""
  return pipeline.load(TINY, tiny_dir)
