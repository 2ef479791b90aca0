"""Features found in a record's bytes are those protobuf's own parser reads."""

import numpy as np
import pytest
from tensorflow_datasets.proto import tf_example_generated_pb2 as example_pb2

from mtpkd_jax.data import example_wire


def _parsed(data: bytes) -> dict:
  """The reference: ``{key: (kind, values)}`` from protobuf's parser."""
  out = {}
  for key, feature in example_pb2.Example.FromString(data).features.feature.items():
    kind = feature.WhichOneof("kind")
    if kind is not None:
      out[key] = (kind, list(getattr(feature, kind).value))
  return out


def _found(data: bytes) -> dict:
  """``example_wire.features`` in the reference's form."""
  out = {}
  for key, feature in example_wire.features(data).items():
    if feature.kind == "bytes_list":
      out[key] = (feature.kind, [data[start:stop] for start, stop in feature.values])
    else:
      out[key] = (feature.kind, list(feature.values))
  return out


def _example(rng) -> bytes:
  example = example_pb2.Example()
  features = example.features.feature
  features["clip"].bytes_list.value.append(rng.integers(0, 256, 300, np.uint8).tobytes())
  features["words"].bytes_list.value.extend([b"a", b"", "é".encode()])
  features["signal"].float_list.value.extend(rng.normal(size=7).astype(np.float32).tolist())
  features["ids"].int64_list.value.extend([0, 1, -1, 2**63 - 1, -(2**63), 300, -300])
  features["none"].int64_list.value.extend([])
  features.get_or_create("unset")  # A Feature with no kind set.
  return example.SerializeToString(deterministic=True)


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1
  out = bytearray()
  while value >= 0x80:
    out.append(value & 0x7F | 0x80)
    value >>= 7
  return bytes([*out, value])


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited field."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _one_feature(key: str, feature: bytes) -> bytes:
  """An example of one feature (a ``Feature`` message's bytes) under ``key``."""
  return _field(1, _field(1, _field(1, key.encode()) + _field(2, feature)))


def test_features_are_those_protobuf_parses():
  rng = np.random.default_rng(0)
  for _ in range(3):
    data = _example(rng)
    assert _found(data) == _parsed(data)


def test_unpacked_values_merged_messages_and_repeated_keys():
  # Unpacked float_list and int64_list values (a writer may use either encoding).
  floats = b"".join(_varint(1 << 3 | 5) + np.float32(v).tobytes() for v in (1.5, -2.0))
  ints = b"".join(_varint(1 << 3 | 0) + _varint(v) for v in (5, -7, 2**40))
  data = _one_feature("f", _field(2, floats)) + _one_feature("i", _field(3, ints))
  # A second message of features (as a build appends `index`), one key given again, with
  # another kind: its last value counts.
  data += _one_feature("index", _field(3, _field(1, _varint(12))))
  data += _one_feature("f", _field(1, _field(1, b"replaced")))
  data += _one_feature("gone", _field(3, _field(1, _varint(3)))) + _one_feature("gone", b"")
  # A Feature with one kind given twice: its values merged.
  data += _one_feature("twice", _field(3, _field(1, _varint(1))) + _field(3, _field(1, _varint(2))))
  assert _found(data) == _parsed(data)
  assert _found(data)["index"] == ("int64_list", [12])
  assert _found(data)["f"] == ("bytes_list", [b"replaced"])
  assert "gone" not in _found(data)


@pytest.mark.parametrize("cut", [1, 5, -1])
def test_bytes_that_are_not_a_message_are_refused(cut):
  data = _example(np.random.default_rng(1))
  with pytest.raises(ValueError, match="Not a serialized tf.train.Example"):
    example_wire.features(data[:cut] if cut > 0 else data + b"\x0f")
