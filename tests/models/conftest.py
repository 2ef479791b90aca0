"""Shared checks for the model tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def _assert_batch_independent(fn, batch_a, batch_b, atol=1e-5, rtol=1e-5):
  """Checks that sample 0 of `batch_a`, moved to row 1 of `batch_b`, gets the same output.

  Args:
    fn: Maps a batch (a pytree of arrays with a leading batch axis) to an output pytree
      with a leading batch axis.
    batch_a: A batch.
    batch_b: A batch of other samples, at least 2 rows (its size may differ).
    atol: Absolute tolerance.
    rtol: Relative tolerance.
  """
  mixed = jax.tree.map(lambda a, b: b.at[1].set(a[0]), batch_a, batch_b)
  out_a, out_mixed = fn(batch_a), fn(mixed)
  jax.tree.map(
    lambda a, m: np.testing.assert_allclose(
      np.asarray(a[0], np.float32), np.asarray(m[1], np.float32), atol=atol, rtol=rtol
    ),
    out_a,
    out_mixed,
  )
  # The check means something only if the batch-mates themselves differ.
  assert not np.allclose(
    np.asarray(jax.tree.leaves(out_mixed)[0][0], np.float32),
    np.asarray(jax.tree.leaves(out_mixed)[0][1], np.float32),
  )


@pytest.fixture
def assert_batch_independent():
  """The batch-independence check, as a fixture so every test module can use it."""
  return _assert_batch_independent


def count_params(tree) -> int:
  """Number of scalars in a pytree of arrays or shape structs."""
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.fixture
def param_count():
  """`count_params`, as a fixture."""
  return count_params


def _random_variables(module, *args, seed=0, **kwargs):
  """Variables of `module.init(key, *args, **kwargs)`'s structure, drawn with NumPy.

  Compiling `init` for a deep network takes far longer on CPU than the tests themselves, so
  the tests draw values directly: kernels `N(0, 1 / fan_in)`, BatchNorm scales near 1,
  running variances in [0.5, 1.5], every other leaf (biases, running means) `N(0, 0.1)`.
  Running statistics away from their initial values make the eval-mode checks meaningful.
  """
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(module.init, jax.random.key(0), *args, **kwargs)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path[-1:])
    shape, dtype = leaf.shape, leaf.dtype
    if "kernel" in name:
      value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
    elif "scale" in name:
      value = 1.0 + 0.1 * rng.normal(size=shape)
    elif "var" in name:
      value = rng.uniform(0.5, 1.5, size=shape)
    else:
      value = 0.1 * rng.normal(size=shape)
    return jnp.asarray(value, dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture
def random_variables():
  """`_random_variables`, as a fixture."""
  return _random_variables
