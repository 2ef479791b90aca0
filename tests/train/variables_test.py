"""Tests for mtpkd_jax.train.variables: the .npz format and the checked graft."""

import numpy as np
import pytest

from mtpkd_jax.train import variables as variables_lib


def _values():
  rng = np.random.default_rng(0)
  return {
    "params": {
      "encoder": {"conv": {"kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32)}},
      "head": {"bias": np.zeros(2, np.float32)},
    },
    "batch_stats": {"encoder": {"bn": {"mean": rng.normal(size=4).astype(np.float32)}}},
  }


def test_npz_holds_one_array_per_slash_joined_path_and_reads_back(tmp_path):
  values = _values()
  path = tmp_path / "v.npz"
  variables_lib.save_npz(path, values)
  with np.load(path) as f:
    assert sorted(f.files) == [
      "batch_stats/encoder/bn/mean",
      "params/encoder/conv/kernel",
      "params/head/bias",
    ]
  again = variables_lib.load_npz(path)
  assert again.keys() == values.keys()
  np.testing.assert_array_equal(
    again["params"]["encoder"]["conv"]["kernel"], values["params"]["encoder"]["conv"]["kernel"]
  )
  np.testing.assert_array_equal(
    again["batch_stats"]["encoder"]["bn"]["mean"], values["batch_stats"]["encoder"]["bn"]["mean"]
  )


def test_graft_checked_replaces_the_submodule_in_every_collection():
  values = _values()
  sub = {
    "params": {"conv": {"kernel": np.ones((3, 3, 2, 4), np.float64)}},
    "batch_stats": {"bn": {"mean": np.full(4, 2.0)}},
  }
  out = variables_lib.graft_checked(values, "encoder", sub, source="f.npz")
  kernel = out["params"]["encoder"]["conv"]["kernel"]
  assert kernel.dtype == np.float32  # The dtype of the leaf it replaces.
  np.testing.assert_array_equal(kernel, 1.0)
  np.testing.assert_array_equal(out["batch_stats"]["encoder"]["bn"]["mean"], 2.0)
  assert out["params"]["head"] is values["params"]["head"]


def test_graft_checked_names_every_leaf_that_does_not_fit():
  sub = {
    "params": {"conv": {"kernel": np.ones((3, 3, 2, 8))}, "extra": {"bias": np.ones(2)}},
  }
  with pytest.raises(ValueError) as error:
    variables_lib.graft_checked(_values(), "encoder", sub, source="f.npz")
  assert str(error.value) == (
    "f.npz does not fit submodule 'encoder': missing batch_stats/bn/mean; unexpected "
    "params/extra/bias; params/conv/kernel has shape (3, 3, 2, 8), expected (3, 3, 2, 4)."
  )
  many = {"params": {f"w{i}": np.ones(1) for i in range(10)}}
  with pytest.raises(ValueError, match=r"unexpected params/w5; and 4 more\.$"):
    variables_lib.graft_checked(_values(), "encoder", many, source="f.npz")
