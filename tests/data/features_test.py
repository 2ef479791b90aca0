"""The features format: a round trip through the TFDS builder, and every bad input."""

import numpy as np
import pytest

from mtpkd_jax.data import features, pipeline
from mtpkd_jax.data import schema as schema_lib
from tests.features_files import write_features


def _open(path, data_dir, **options):
  return pipeline.open_dataset("features_npz", str(data_dir), {"path": str(path), **options})


def test_round_trip_keeps_every_array_and_describes_it(tmp_path):
  arrays = write_features(tmp_path / "f.npz")
  dataset = _open(tmp_path / "f.npz", tmp_path / "tfds")
  assert dataset.schema == schema_lib.Schema(
    (
      schema_lib.Modality("eda", "sequence", (6, 3), masked=True),
      schema_lib.Modality("face", "vector", (5,)),
    ),
    schema_lib.Task("classification", ("low", "high")),
    has_subject=True,
  )
  assert dataset.description == str((tmp_path / "f.npz").resolve())
  columns = dataset.table.take(np.arange(len(dataset)))
  np.testing.assert_array_equal(columns["face"], arrays["x_face"])
  np.testing.assert_array_equal(columns["eda"], arrays["x_eda"])
  np.testing.assert_array_equal(columns["mask_eda"], arrays["mask_eda"])
  np.testing.assert_array_equal(columns["y"], arrays["y"])
  np.testing.assert_array_equal(dataset.subject, arrays["subject"])
  assert dataset.split is None


def test_regression_targets_official_split_and_streaming(tmp_path):
  split = np.array(["train"] * 30 + ["val"] * 8 + ["test"] * 10)
  arrays = write_features(tmp_path / "f.npz", task="regression", num_targets=3, split=split)
  streamed = _open(tmp_path / "f.npz", tmp_path / "tfds", task=None)
  assert streamed.schema.task == schema_lib.Task("regression", ("dim0", "dim1", "dim2"))
  np.testing.assert_array_equal(streamed.y, arrays["y"])
  np.testing.assert_array_equal(streamed.split, [0] * 30 + [1] * 8 + [2] * 10)
  one = write_features(tmp_path / "one.npz", task="regression", num_targets=1)
  dataset = _open(tmp_path / "one.npz", tmp_path / "tfds")
  assert dataset.schema.task.names == ("dim0",)
  np.testing.assert_array_equal(dataset.y, one["y"][:, None])


def test_the_task_can_override_the_dtype_of_y(tmp_path):
  write_features(tmp_path / "f.npz", y=np.tile([0.0, 1.0, 2.0], 16), class_names=None)
  assert _open(tmp_path / "f.npz", tmp_path / "tfds").schema.task.kind == "regression"
  dataset = _open(tmp_path / "f.npz", tmp_path / "tfds", task="classification")
  assert dataset.schema.task == schema_lib.Task("classification", ("class0", "class1", "class2"))
  np.testing.assert_array_equal(dataset.y, np.tile([0, 1, 2], 16))


def test_an_edited_file_is_built_anew(tmp_path):
  write_features(tmp_path / "f.npz", seed=0)
  first = _open(tmp_path / "f.npz", tmp_path / "tfds")
  arrays = write_features(tmp_path / "f.npz", seed=1)
  second = _open(tmp_path / "f.npz", tmp_path / "tfds")
  assert first.fingerprint != second.fingerprint
  np.testing.assert_array_equal(second.y, arrays["y"])


N = 48
BAD_INPUTS = {
  "differing N": (dict(subject=np.zeros(N - 1, int)), None, r"first \(example\) axis"),
  "NaN feature": (dict(x_face=np.full((N, 5), np.nan, np.float32)), None, r"'x_face'.*NaN"),
  "Inf feature": (
    dict(x_eda=np.where(np.arange(N)[:, None, None] == 7, np.inf, np.zeros((N, 6, 3)))),
    None,
    r"'x_eda'.*NaN or Inf \(example 7\)",
  ),
  "non-integer class": (dict(y=np.linspace(0, 1, N)), "classification", "non-integer"),
  "negative class": (dict(y=np.arange(N) % 2 - 1), None, "negative class"),
  "class with no example": (
    dict(y=np.arange(N) % 2, class_names=np.array(["a", "b", "c"])),
    None,
    r"\['c'\] have no example",
  ),
  "class with no training example": (
    dict(y=(np.arange(N) >= 40).astype(int), split=np.array(["train"] * 40 + ["test"] * 8)),
    None,
    r"\['high'\] have no example in split 'train'",
  ),
  "y of wrong rank": (dict(y=np.zeros((N, 2), int)), None, r"'y' must be \[N\] class indices"),
  "regression y of wrong rank": (
    dict(y=np.zeros((N, 2, 2), np.float32), target_names=None),
    None,
    r"'y' must be float \[N\] or \[N, K\]",
  ),
  "bad split value": (dict(split=np.array(["train", "dev"] * 24)), None, r"\['dev'\]"),
  "no test split": (dict(split=np.array(["train", "val"] * 24)), None, "no 'test' example"),
  "pickled objects": (
    dict(subject=np.array([object()] * N, dtype=object)),
    None,
    "'subject' is a pickled object array",
  ),
  "bad mask": (dict(mask_eda=np.ones((N, 5), bool)), None, r"'mask_eda' must be bool \[48, 6\]"),
  "mask without x": (dict(mask_text=np.ones((N, 5), bool)), None, "'mask_text' has no matching"),
  # Sequence encoders count a row's valid steps (`mask.sum`): a hole or an empty row would
  # silently feed padding to them.
  "mask with a hole": (
    dict(mask_eda=np.where(np.arange(N)[:, None] == 3, [1, 0, 1, 0, 0, 0], 1).astype(bool)),
    None,
    r"'mask_eda' must be True on a prefix.*example 3 is \[1, 0, 1, 0, 0, 0\]",
  ),
  "mask with no valid step": (
    dict(mask_eda=np.arange(N)[:, None] != np.full((1, 6), 5)),
    None,
    "'mask_eda' has no valid step in example 5",
  ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_raise_naming_the_file_and_the_key(tmp_path, case):
  extra, task, message = BAD_INPUTS[case]
  path = tmp_path / "bad.npz"
  arrays = write_features(path, task="classification")
  np.savez(path, **{k: v for k, v in {**arrays, **extra}.items() if v is not None})
  with pytest.raises(ValueError, match=message) as error:
    _open(path, tmp_path / "tfds", task=task)
  assert str(path.resolve()) in str(error.value)
  assert not (tmp_path / "tfds" / "features_npz").exists() or not any(
    (tmp_path / "tfds" / "features_npz").glob("*/*/dataset_info.json")
  )


def test_a_file_that_is_not_an_npz_is_named(tmp_path):
  (tmp_path / "f.npz").write_text("x_face,y\n1,0\n")
  with pytest.raises(ValueError, match=r"f\.npz: not an \.npz file"):
    _open(tmp_path / "f.npz", tmp_path / "tfds")
  with pytest.raises(ValueError, match="no such file"):
    _open(tmp_path / "missing.npz", tmp_path / "tfds")
  np.savez(tmp_path / "g.npz", y=np.zeros(4, int))
  with pytest.raises(ValueError, match="no modality"):
    features.inspect_npz(tmp_path / "g.npz")


def test_a_file_with_no_example_is_named(tmp_path):
  np.savez(tmp_path / "f.npz", x_face=np.zeros((0, 5), np.float32), y=np.zeros(0, np.int64))
  with pytest.raises(ValueError, match=r"f\.npz: key 'y' holds no example"):
    features.inspect_npz(tmp_path / "f.npz")


def test_masks_of_any_valid_prefix_are_accepted(tmp_path):
  # Every length from one step to the whole row, the two ends included.
  mask = np.arange(6)[None] < (np.arange(N) % 6 + 1)[:, None]
  write_features(tmp_path / "f.npz", mask_eda=mask)
  assert features.inspect_npz(tmp_path / "f.npz").schema.modality("eda").masked
