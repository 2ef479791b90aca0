"""Clip augmentation: each draw is one of the hand-made transforms, per example, on any devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.models import augment
from mtpkd_jax.train import parallel

CLIP = np.random.default_rng(0).normal(size=(5, 6, 7, 3)).astype(np.float32)


def _shifted(clip, dy, dx, shift):
  """`clip` translated by (dy, dx) pixels, its vacated border repeating the edge (NumPy)."""
  padded = np.pad(clip, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
  height, width = clip.shape[1:3]
  return padded[:, shift - dy : shift - dy + height, shift - dx : shift - dx + width]


def _draws(reverse=0.0, mirror=0.0, shift=0, n=200):
  keys = jax.random.split(jax.random.key(1), n)
  draw = jax.vmap(augment.augment_clip, (0, None, None, None, None))
  return list(np.asarray(draw(keys, CLIP, reverse, mirror, shift)))


def test_certain_reversal_and_mirroring_are_the_numpy_transforms():
  np.testing.assert_array_equal(_draws(reverse=1.0, n=1)[0], CLIP[::-1])
  np.testing.assert_array_equal(_draws(mirror=1.0, n=1)[0], CLIP[:, :, ::-1])
  np.testing.assert_array_equal(_draws(reverse=1.0, mirror=1.0, n=1)[0], CLIP[::-1, :, ::-1])
  np.testing.assert_array_equal(_draws(n=1)[0], CLIP)


@pytest.mark.parametrize("name, transform", [("reverse", CLIP[::-1]), ("mirror", CLIP[:, :, ::-1])])
def test_half_the_draws_are_transformed(name, transform):
  draws = _draws(**{name: 0.5})
  transformed = [np.array_equal(d, transform) for d in draws]
  assert all(t or np.array_equal(d, CLIP) for t, d in zip(transformed, draws, strict=True))
  assert 0.4 < np.mean(transformed) < 0.6


def test_reversal_and_mirroring_are_drawn_independently():
  transforms = [CLIP, CLIP[::-1], CLIP[:, :, ::-1], CLIP[::-1, :, ::-1]]
  draws = _draws(reverse=0.5, mirror=0.5, n=400)
  counts = [sum(np.array_equal(d, t) for d in draws) for t in transforms]
  assert sum(counts) == len(draws)
  assert min(counts) > 70  # 100 expected each.


def test_shifts_are_the_nine_edge_padded_translations_drawn_uniformly():
  draws = _draws(shift=1, n=450)
  offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
  counts = {}
  for d in draws:
    (match,) = [o for o in offsets if np.array_equal(d, _shifted(CLIP, *o, 1))]
    counts[match] = counts.get(match, 0) + 1
  assert len(counts) == 9
  assert min(counts.values()) > 30  # 50 expected each.
  # The helper's convention: (1, -1) moves the content down and to the left.
  assert np.array_equal(_shifted(CLIP, 1, -1, 1)[:, 1:, :-1], CLIP[:, :-1, 1:])


def _apply(video, key, train=True, **kwargs):
  return augment.ClipAugment(**kwargs).apply({}, video, train, rngs={"dropout": key})


def test_examples_draw_independently_and_eval_mode_is_the_identity():
  video = jnp.asarray(np.broadcast_to(CLIP, (16, *CLIP.shape)))
  out = np.asarray(_apply(video, jax.random.key(0), reverse=0.5))
  reversed_ = [np.array_equal(o, CLIP[::-1]) for o in out]
  assert 0 < sum(reversed_) < len(out)
  np.testing.assert_array_equal(augment.ClipAugment(1.0, 1.0, 1).apply({}, video, False), video)


def test_draws_do_not_depend_on_the_device_count():
  video = jnp.asarray(np.random.default_rng(1).normal(size=(16, *CLIP.shape)), jnp.float32)
  key = jax.random.key(3)
  kwargs = {"reverse": 0.5, "mirror": 0.5, "shift": 1}
  reference = _apply(video, key, **kwargs)
  for devices in (2, 4, 8):
    spec = jax.sharding.PartitionSpec(parallel.DATA_AXIS)
    mapped = jax.jit(
      jax.shard_map(
        lambda v, k: _apply(v, k, **kwargs),
        mesh=parallel.make_mesh(devices),
        in_specs=(spec, jax.sharding.PartitionSpec()),
        out_specs=spec,
      )
    )
    np.testing.assert_array_equal(mapped(video, key), reference)


@pytest.mark.parametrize(
  "kwargs, match",
  [({"reverse": 1.5}, "`reverse`"), ({"mirror": -0.1}, "`mirror`"), ({"shift": -1}, "`shift`")],
)
def test_bad_arguments_are_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    _apply(jnp.zeros((2, *CLIP.shape)), jax.random.key(0), **kwargs)
