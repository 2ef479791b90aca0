"""Per-example dropout: the same masks, outputs and updates on 1, 2, 4 and 8 devices."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mtpkd_jax import models
from mtpkd_jax.models import dropout
from mtpkd_jax.train import parallel
from mtpkd_jax.train import step as step_lib
from mtpkd_jax.train.state import create_train_state


def test_masks_keep_the_expected_fraction_scaled_by_the_keep_probability():
  x = jnp.ones((64, 50, 10))
  y = np.asarray(dropout.per_example_dropout(jax.random.key(0), x, 0.3))
  np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.7], rtol=1e-6)
  assert abs(np.mean(y == 0) - 0.3) < 0.01
  # Examples get different masks.
  assert not np.array_equal(y[0], y[1])
  with pytest.raises(ValueError, match="rate"):
    dropout.per_example_dropout(jax.random.key(0), x, 1.0)


def _fusion_setup():
  model = models.FusionBlock(3, dropout_rate=0.3, modality_dropout=0.5)
  rng = np.random.default_rng(0)
  batch = {
    "v": rng.normal(size=(16, 4, 8)).astype(np.float32),
    "p": rng.normal(size=(16, 2, 8)).astype(np.float32),
  }
  variables = jax.jit(model.init)(jax.random.key(1), [batch["v"][:1], batch["p"][:1]])

  def loss_fn(params, batch_stats, batch, rng, frozen):
    del frozen
    outputs, z = model.apply(
      {"params": params}, [batch["v"], batch["p"]], train=True, rngs={"dropout": rng}
    )
    # Per-example terms only: the mean over devices is the global mean.
    loss = jnp.mean(jnp.square(outputs)) + jnp.mean(z)
    return loss, ({"first": outputs[0, 0]}, batch_stats)

  state = create_train_state(model.apply, variables, optax.sgd(0.1))
  return model, state, batch, step_lib.make_train_step(loss_fn)


@pytest.mark.fast_compile
def test_fusion_outputs_in_train_mode_do_not_depend_on_the_device_count():
  model, state, batch, _ = _fusion_setup()

  def outputs(x_v, x_p, key):
    return model.apply(state_vars, [x_v, x_p], train=True, rngs={"dropout": key})[0]

  state_vars = {"params": state.params}
  key = jax.random.key(5)
  reference = jax.jit(outputs)(batch["v"], batch["p"], key)
  deterministic = jax.jit(model.apply)(state_vars, [batch["v"], batch["p"]])[0]
  assert not np.allclose(reference, deterministic, atol=1e-3)
  for devices in (2, 4, 8):
    mesh = parallel.make_mesh(devices)
    spec = jax.sharding.PartitionSpec(parallel.DATA_AXIS)
    mapped = jax.jit(
      jax.shard_map(
        outputs,
        mesh=mesh,
        in_specs=(spec, spec, jax.sharding.PartitionSpec()),
        out_specs=spec,
        check_vma=False,
      )
    )
    np.testing.assert_allclose(mapped(batch["v"], batch["p"], key), reference, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.fast_compile
def test_train_steps_with_dropout_agree_on_1_2_4_and_8_devices():
  _, initial, batch, per_device_step = _fusion_setup()
  results = {}
  for devices in (1, 2, 4, 8):
    mesh = parallel.make_mesh(devices)
    step = parallel.data_parallel(per_device_step, mesh, donate_state=False)
    state = parallel.replicate_on_mesh(initial, mesh)
    for _ in range(2):
      state, metrics = step(state, parallel.shard_batch(batch, mesh), jax.random.key(3))
    results[devices] = (state.params, metrics["loss"])
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b), results[1][0], initial.params)
  assert any(jax.tree.leaves(moved))
  for devices in (2, 4, 8):
    chex.assert_trees_all_close(results[devices][0], results[1][0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(results[devices][1], results[1][1], rtol=1e-5)
