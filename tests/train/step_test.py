"""The per-device step: key derivation, metrics, finiteness flag, float32 parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import train_toys

from mtpkd_jax.train import parallel
from mtpkd_jax.train import state as state_lib
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


def _two_terms(params, batch_stats, batch, rng, frozen):
  """``0.5 * mean((x w - y)²) + 2 * |w|²``, its two terms logged as ``fit`` and ``size``."""
  del rng, frozen
  w = params["w"]
  fit = jnp.mean((batch["x"] @ w - batch["y"]) ** 2)
  size = jnp.sum(w**2)
  return 0.5 * fit + 2.0 * size, ({"fit": fit, "size": size}, batch_stats)


def test_each_terms_gradient_norm_is_that_of_its_weighted_term_on_the_global_batch():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=8).astype(np.float32)
  w = np.array([0.5, -1.0, 2.0], np.float32)
  # The gradients written out: d mean((xw - y)²)/dw = 2 xᵀ(xw - y) / n, d |w|²/dw = 2w.
  fit = 0.5 * 2 * x.T @ (x @ w - y) / len(y)
  size = 2.0 * 2 * w
  weights = {"fit": 0.5, "size": 2.0}
  for devices in (1, 4):
    mesh = parallel.make_mesh(devices)
    state = state_lib.create_train_state(lambda *a: None, {"params": {"w": w}}, optax.sgd(0.1))
    step = parallel.data_parallel(step_lib.make_train_step(_two_terms, term_weights=weights), mesh)
    batch = parallel.shard_batch({"x": x, "y": y}, mesh)
    _, metrics = step(parallel.replicate_on_mesh(state, mesh), batch, jax.random.key(0), None)
    np.testing.assert_allclose(metrics["grad_norm/fit"], np.linalg.norm(fit), rtol=1e-5)
    np.testing.assert_allclose(metrics["grad_norm/size"], np.linalg.norm(size), rtol=1e-5)
    np.testing.assert_allclose(metrics["grad_norm"], np.linalg.norm(fit + size), rtol=1e-5)
