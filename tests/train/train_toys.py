"""Toy models, losses and batches shared by the train tests and the kill/resume script."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtpkd_jax.train import state as state_lib
from mtpkd_jax.train import step as step_lib

IN_DIM = 4


class MLP(nn.Module):
  """Two dense layers; optionally BatchNorm with statistics over the `"data"` axis."""

  batch_norm: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    # A bias before BatchNorm has a zero gradient that Adam would amplify into noise.
    x = nn.Dense(16, use_bias=not self.batch_norm, dtype=self.dtype)(x)
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.8, axis_name="data")(x)
    x = nn.relu(x)
    return nn.Dense(1, dtype=self.dtype)(x)


@functools.cache
def _init_fn(model: nn.Module):
  """Jitted init, one compilation per model (eager init would compile every op)."""

  def init(rng):
    variables = model.init(rng, jnp.ones((2, IN_DIM)), train=False)
    return state_lib.create_train_state(model.apply, variables, optax.adam(1e-2))

  return jax.jit(init)


def make_state(model: nn.Module, seed: int = 0) -> state_lib.TrainState:
  """A fresh Adam state (new buffers on every call, so it may be donated)."""
  return _init_fn(model)(jax.random.key(seed))


def regression_loss(model: nn.Module, noise: float = 0.0):
  """MSE on `batch["y"]`; `frozen["offset"]` (if any) is added to the predictions.

  With `noise > 0` the inputs are jittered with the step's key, so the loss depends on
  the per-step randomness.
  """

  def loss_fn(params, batch_stats, batch, rng, frozen):
    x = batch["x"] + noise * jax.random.normal(rng, batch["x"].shape)
    preds, updates = model.apply(
      {"params": params, "batch_stats": batch_stats}, x, mutable=["batch_stats"]
    )
    if frozen is not None:
      preds = preds + frozen["offset"]
    loss = jnp.mean((preds.astype(jnp.float32) - batch["y"]) ** 2)
    return loss, ({"mae": jnp.mean(jnp.abs(preds - batch["y"]))}, updates["batch_stats"])

  return loss_fn


def train_step(model: nn.Module, noise: float = 0.0):
  return step_lib.make_train_step(regression_loss(model, noise))


def batch(i: int, size: int = 32) -> dict[str, np.ndarray]:
  """A deterministic regression batch for update `i`, leaves `[size, ...]`."""
  rng = np.random.default_rng(i)
  x = rng.normal(size=(size, IN_DIM)).astype(np.float32)
  y = (np.sin(x).sum(axis=1, keepdims=True) + 0.1 * rng.normal(size=(size, 1))).astype(np.float32)
  return {"x": x, "y": y}


def validation_mse(model: nn.Module):
  """`eval_fn(params, batch_stats) -> {"mse": ...}` on a fixed validation batch."""
  val = batch(10_000, size=64)

  @jax.jit
  def mse(params, batch_stats):
    preds = model.apply({"params": params, "batch_stats": batch_stats}, val["x"], train=False)
    return jnp.mean((preds - val["y"]) ** 2)

  return lambda params, batch_stats: {"mse": float(mse(params, batch_stats))}
