"""Builds a dataset from dummy files and reads it back, for the builder tests."""

from mtpkd_jax.data import pipeline


def build_and_read(root, tmp_path, name: str, options: dict):
  """``(dataset, build report, records in example order)`` of ``name`` built from ``root``."""
  builder = pipeline.builder(name, str(tmp_path / "tfds"), options, str(root))
  built = builder.download_and_prepare()
  dataset = pipeline.open_dataset(name, str(tmp_path / "tfds"), options)
  stored = sorted(
    builder.as_data_source("train").__getitems__(range(len(dataset))), key=lambda r: r["index"]
  )
  return dataset, built, stored
