"""The per-device step: key derivation, metrics, finiteness flag, float32 parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import train_toys

from mtpkd_jax.train import parallel
from mtpkd_jax.train import step as step_lib


def _draw_loss(params, batch_stats, batch, rng, frozen):
  """Loss 0 * params, metric: a uniform draw from the step's key, scaled by the batch."""
  draw = jax.random.uniform(rng) * jnp.mean(batch["scale"])
  loss = sum(jnp.sum(p) for p in jax.tree.leaves(params)) * 0.0 + frozen["loss"]
  return loss, ({"draw": draw}, batch_stats)


def test_key_is_folded_with_the_step_not_the_device_and_metrics_are_averaged():
  mesh = parallel.make_mesh(8)
  state = parallel.replicate_on_mesh(train_toys.make_state(train_toys.MLP()), mesh)
  step = parallel.data_parallel(step_lib.make_train_step(_draw_loss), mesh)
  rng = jax.random.key(7)
  batch = {"scale": np.ones((16,), np.float32)}
  for expected_step in range(2):
    assert int(state.step) == expected_step
    state, metrics = step(state, batch, rng, {"loss": jnp.float32(0.25)})
    # Every device draws from the same key: the device layout cannot change a draw.
    expected = jax.random.uniform(jax.random.fold_in(rng, expected_step))
    np.testing.assert_allclose(metrics["draw"], expected, rtol=1e-6)
  assert set(metrics) == {"draw", "loss", "grad_norm", "finite"}
  assert metrics["loss"].dtype == jnp.float32
  np.testing.assert_allclose(metrics["loss"], 0.25)
  assert bool(metrics["finite"])


def test_finite_flag_is_false_for_nan_loss():
  mesh = parallel.make_mesh(2)
  state = parallel.replicate_on_mesh(train_toys.make_state(train_toys.MLP()), mesh)
  step = parallel.data_parallel(step_lib.make_train_step(_draw_loss), mesh)
  batch = {"scale": np.ones((4,), np.float32)}
  _, metrics = step(state, batch, jax.random.key(0), {"loss": jnp.float32(np.nan)})
  assert not bool(metrics["finite"])


def test_bfloat16_compute_keeps_float32_params_and_loss():
  model = train_toys.MLP(dtype=jnp.bfloat16)
  mesh = parallel.make_mesh(2)
  state = parallel.replicate_on_mesh(train_toys.make_state(model), mesh)
  step = parallel.data_parallel(train_toys.train_step(model), mesh)
  state, metrics = step(state, parallel.shard_batch(train_toys.batch(0), mesh), jax.random.key(0))
  assert {leaf.dtype for leaf in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
  assert {leaf.dtype for leaf in jax.tree.leaves(state.opt_state)} <= {
    jnp.dtype(jnp.float32),
    jnp.dtype(jnp.int32),
  }
  assert metrics["loss"].dtype == jnp.float32 and bool(metrics["finite"])
