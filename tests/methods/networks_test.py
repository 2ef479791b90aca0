"""The stage networks: the T-Nets learn on detached visual features."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtpkd_jax.methods import networks


class _Encoder(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    del train
    return nn.Dense(8)(x)


def test_the_tnet_loss_does_not_reach_a_fine_tuned_visual_encoder():
  model = networks.JointTeacher(
    2, 1, tnet_hidden=(8,), dropout_rate=0.0, encoders=(_Encoder(), _Encoder())
  )
  rng = np.random.default_rng(0)
  inputs = [rng.normal(size=(4, 3, 5)).astype(np.float32), rng.normal(size=(4, 2, 5))]
  params = model.init(jax.random.key(0), inputs)["params"]

  def grads(term):
    return jax.grad(lambda p: term(*model.apply({"params": p}, inputs)))(params)

  tnet = grads(lambda outputs, z, hallucinated, tokens: jnp.mean((hallucinated[0] - 1.0) ** 2))
  task = grads(lambda outputs, z, hallucinated, tokens: jnp.sum(outputs))
  norm = lambda tree: float(sum(np.sum(np.square(x)) for x in jax.tree.leaves(tree)))  # noqa: E731
  assert norm(tnet["tnet0"]) > 0
  assert norm(tnet["encoders_0"]) == 0.0
  # The task loss does train the encoder.
  assert norm(task["encoders_0"]) > 0
