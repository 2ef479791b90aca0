"""The per-device training step, shared by every stage and method.

A method supplies only its loss:

    loss_fn(params, batch_stats, batch, rng, frozen) -> (loss, (metrics, new_batch_stats))

* `params`: the trainable parameters (float32 pytree), the only argument differentiated.
* `batch_stats`: the state's BatchNorm statistics (`{}` if the model has none).
* `batch`: this device's shard of the global batch, leaves `[per_device_batch, ...]`.
* `rng`: this update's key, `fold_in(stage_rng, step)`, the same on every device. Draws
  that differ per example must fold in the example's global index (as
  `mtpkd_jax.models.dropout` does), so that they do not depend on the device layout.
* `frozen`: the frozen-input slot (e.g. teacher parameters), passed through unchanged and
  wrapped in `stop_gradient`; `None` when the stage has none.
* Returns the scalar mean loss over the shard, a dict of scalar metrics (shard means), and
  the updated `batch_stats` (return the input unchanged when there is none). BatchNorm
  layers should use `axis_name="data"` so that their statistics are over the global batch,
  and a loss that is a statistic of the batch (CCC, similarity matrices, teacher routing)
  must be computed on the gathered global batch (`parallel.all_gather_batch`).

Mixed precision is the model's business (its `dtype`); parameters stay float32, so their
gradients do too.
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from mtpkd_jax.train.parallel import DATA_AXIS
from mtpkd_jax.train.state import TrainState

PyTree = Any
LossFn = Callable[
  [PyTree, PyTree, PyTree, jax.Array, PyTree],
  tuple[jax.Array, tuple[dict[str, jax.Array], PyTree]],
]


def make_train_step(
  loss_fn: LossFn,
  *,
  axis_name: str = DATA_AXIS,
  term_weights: Mapping[str, float] | None = None,
) -> Callable[[TrainState, PyTree, jax.Array, PyTree], tuple[TrainState, dict[str, jax.Array]]]:
  """Builds the per-device update `step(state, batch, rng, frozen) -> (state, metrics)`.

  Run it with `parallel.data_parallel` (shard_map) or `parallel.pmap_step`; both bind
  `axis_name`. Per update, the key is `fold_in(rng, state.step)`, so it depends on the
  step (not on how many times the host loop was restarted) and not on the device.

  Args:
    loss_fn: The loss, with the contract in the module docstring.
    axis_name: Name of the mapped device axis.
    term_weights: `{metric: weight}`: loss terms among `loss_fn`'s metrics and the weights
      the loss gives them, whose gradients to measure apart (a backward pass each, every
      step); `None`: none.

  Returns:
    The per-device step. Its `metrics` hold `loss_fn`'s metrics averaged over devices, plus
    `loss` (float32 scalar, mean over the global batch), `grad_norm` (global L2 norm of the
    averaged gradients), `finite` (bool scalar: loss and gradients are all finite) and, for
    each term `t` of `term_weights`, `grad_norm/t`: the global L2 norm of the averaged
    gradient of `weight * t`. Gradients, loss, metrics and `batch_stats` are `pmean`-ed over
    `axis_name`, so the returned state is the same on every device.
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  terms = dict(term_weights or {})

  def weighted_terms(params, *args):
    _, (metrics, _) = loss_fn(params, *args)
    return jnp.stack([weight * metrics[name] for name, weight in terms.items()])

  def term_grad_norms(params, *args) -> dict[str, jax.Array]:
    """`grad_norm/<term>`: each weighted term's gradient norm, averaged over devices."""
    jacobian = lax.pmean(jax.jacrev(weighted_terms)(params, *args), axis_name)
    squares = sum(
      jnp.sum(leaf.reshape(len(terms), -1) ** 2, 1) for leaf in jax.tree.leaves(jacobian)
    )
    return {f"grad_norm/{name}": jnp.sqrt(squares[i]) for i, name in enumerate(terms)}

  def step(state, batch, rng, frozen):
    rng = jax.random.fold_in(rng, state.step)
    args = (state.batch_stats, batch, rng, lax.stop_gradient(frozen))
    (loss, (metrics, batch_stats)), grads = grad_fn(state.params, *args)
    if terms:
      metrics = {**metrics, **term_grad_norms(state.params, *args)}
    grads, loss, metrics, batch_stats = lax.pmean(
      (grads, loss.astype(jnp.float32), metrics, batch_stats), axis_name
    )
    grad_norm = optax.tree.norm(grads)
    metrics = {
      **metrics,
      "loss": loss,
      "grad_norm": grad_norm,
      "finite": jnp.isfinite(loss) & jnp.isfinite(grad_norm),
    }
    return state.apply_gradients(grads=grads, batch_stats=batch_stats), metrics

  return step
