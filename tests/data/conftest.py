"""Fixtures shared by the data tests: the `tiny` config, built once per session."""

import numpy as np
import pytest

from mtpkd_jax.data import pipeline, synthetic_affect

TINY = "synthetic_affect/tiny"


def read_raw(name, data_dir, overrides=None):
  """Every stored feature of a synthetic dataset (labels, valence, ...), in `index` order."""
  dataset_builder = pipeline.builder(name, data_dir, overrides)
  dataset_builder.download_and_prepare()
  source = dataset_builder.as_data_source(split="train")
  records = source.__getitems__(range(len(source)))
  order = np.argsort([r["index"] for r in records])
  features = dataset_builder.info.features
  return {
    k: np.stack([np.asarray(records[i][k], dtype=features[k].np_dtype) for i in order])
    for k in features
  }


def generate(config):
  """All examples of a `synthetic_affect` config, generated without TFDS, stacked into arrays."""
  examples = [
    example
    for subject in range(config.num_subjects)
    for example in synthetic_affect.subject_examples(config, subject)
  ]
  return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


def build(tmp_path_factory, name):
  """A new TFDS data directory holding the built dataset ``name``."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  pipeline.builder(name, data_dir).download_and_prepare()
  return data_dir


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
  """A TFDS data directory holding a built `synthetic_affect/tiny`."""
  return build(tmp_path_factory, TINY)


@pytest.fixture(scope="session")
def tiny(tiny_dir):
  """`synthetic_affect/tiny`'s stored features, in memory."""
  return read_raw(TINY, tiny_dir)
