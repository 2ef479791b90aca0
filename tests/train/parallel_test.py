"""shard_map on 1 and 8 devices and pmap on 8 run the same per-device step identically."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_toys

from mtpkd_jax.train import parallel
from mtpkd_jax.train import step as step_lib

NUM_STEPS = 3
FROZEN = {"offset": jnp.full((1,), 0.5)}


def _run_shard_map(model, num_devices):
  mesh = parallel.make_mesh(num_devices)
  step = parallel.data_parallel(train_toys.train_step(model), mesh)
  state = parallel.replicate_on_mesh(train_toys.make_state(model), mesh)
  frozen = parallel.replicate_on_mesh(FROZEN, mesh)
  for i in range(NUM_STEPS):
    batch = parallel.shard_batch(train_toys.batch(i), mesh)
    state, metrics = step(state, batch, jax.random.key(1), frozen)
  return state, metrics


def _run_pmap(model):
  step = parallel.pmap_step(train_toys.train_step(model))
  state = parallel.replicate(train_toys.make_state(model))
  for i in range(NUM_STEPS):
    batch = parallel.split_batch(train_toys.batch(i), jax.device_count())
    state, metrics = step(state, batch, jax.random.key(1), FROZEN)
  return parallel.unreplicate(state), parallel.unreplicate(metrics)


@pytest.mark.parametrize("batch_norm", [False, True], ids=["mlp", "batchnorm"])
def test_one_device_shard_map_and_pmap_agree(batch_norm):
  assert jax.device_count() == 8
  model = train_toys.MLP(batch_norm=batch_norm)
  single, single_metrics = _run_shard_map(model, 1)
  sharded, sharded_metrics = _run_shard_map(model, 8)
  pmapped, pmapped_metrics = _run_pmap(model)

  initial = train_toys.make_state(model)
  assert not np.allclose(single.params["Dense_0"]["kernel"], initial.params["Dense_0"]["kernel"])
  for other, metrics in ((sharded, sharded_metrics), (pmapped, pmapped_metrics)):
    assert int(other.step) == int(single.step) == NUM_STEPS
    chex.assert_trees_all_close(other.params, single.params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(other.batch_stats, single.batch_stats, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(metrics["loss"], single_metrics["loss"], rtol=1e-5)
  if batch_norm:
    # Global statistics: the running mean moved, identically with 1 and 8 devices.
    assert np.abs(single.batch_stats["BatchNorm_0"]["mean"]).max() > 1e-3


def test_non_divisible_batch_names_key_size_and_devices():
  mesh = parallel.make_mesh(8)
  bad = {"x": np.zeros((12, 4)), "y": np.zeros((12, 1))}
  with pytest.raises(ValueError, match=r"'x'.*leading size 12.*8 devices"):
    parallel.shard_batch(bad, mesh)
  with pytest.raises(ValueError, match=r"leading size 12.*8 devices"):
    parallel.split_batch(bad, 8)
  model = train_toys.MLP()
  step = parallel.data_parallel(train_toys.train_step(model), mesh)
  state = parallel.replicate_on_mesh(train_toys.make_state(model), mesh)
  with pytest.raises(ValueError, match=r"'x'.*leading size 12.*8 devices"):
    step(state, bad, jax.random.key(0), None)


def test_frozen_inputs_are_used_but_not_updated_or_donated():
  mesh = parallel.make_mesh(8)
  model = train_toys.MLP()
  step = parallel.data_parallel(train_toys.train_step(model), mesh)
  frozen = parallel.replicate_on_mesh({"offset": jnp.full((1,), 3.0)}, mesh)
  batch = parallel.shard_batch(train_toys.batch(0), mesh)

  def loss_after_one_step(frozen_inputs):
    state = parallel.replicate_on_mesh(train_toys.make_state(model), mesh)
    return step(state, batch, jax.random.key(0), frozen_inputs)

  with_frozen, metrics = loss_after_one_step(frozen)
  _, metrics_without = loss_after_one_step(None)
  assert float(metrics["loss"]) != pytest.approx(float(metrics_without["loss"]))
  # Still alive (not donated) and unchanged; the new state has no trace of it.
  np.testing.assert_array_equal(frozen["offset"], [3.0])
  assert set(with_frozen.params) == {"Dense_0", "Dense_1"}


def test_step_compiles_once():
  mesh = parallel.make_mesh(8)
  model = train_toys.MLP()
  loss_fn = chex.assert_max_traces(train_toys.regression_loss(model), n=1)
  step = parallel.data_parallel(step_lib.make_train_step(loss_fn), mesh)
  state = parallel.replicate_on_mesh(train_toys.make_state(model), mesh)
  for i in range(3):
    state, _ = step(state, parallel.shard_batch(train_toys.batch(i), mesh), jax.random.key(0))
  assert int(state.step) == 3
