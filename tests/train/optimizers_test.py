"""Adam with its own learning rate for chosen submodules."""

import jax
import numpy as np

from mtpkd_jax.train import optimizers


def test_backbones_get_their_own_learning_rate():
  params = {"encoder": {"w": np.ones(3)}, "fusion": {"w": np.ones(3)}}
  tx = optimizers.adam(params, 1.0, encoder=1e-3)
  grads = jax.tree.map(np.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first step has magnitude = learning rate.
  np.testing.assert_allclose(updates["encoder"]["w"], -1e-3, rtol=1e-4)
  np.testing.assert_allclose(updates["fusion"]["w"], -1.0, rtol=1e-4)
