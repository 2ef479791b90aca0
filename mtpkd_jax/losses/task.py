"""Task losses: cross-entropy for classes, `1 - CCC` for continuous affect dimensions."""

import jax
import jax.numpy as jnp
import optax

from mtpkd_jax.losses import _checks

# Batch key of the targets: class indices `[batch]`, or regression targets `[batch, K]`.
TARGET_KEY = "y"


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Softmax cross-entropy from integer labels, averaged over the batch.

  Args:
    logits: Array of shape `[batch, num_classes]`.
    labels: Integer array of shape `[batch]` with values in `[0, num_classes)`.

  Returns:
    Scalar mean cross-entropy.

  Raises:
    ValueError: if `logits` is not rank 2 or `labels` is not `[batch]`.
  """
  _checks.check_rank("logits", logits, 2)
  if labels.shape != logits.shape[:1]:
    raise ValueError(
      f"`labels` must have shape {logits.shape[:1]} to match `logits` {logits.shape}, "
      f"got {labels.shape}."
    )
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def ccc(x: jax.Array, y: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Concordance correlation coefficient along the leading (sample) axis.

  `CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2 + eps)`, with population
  (divide-by-N) moments. `eps` keeps constant inputs finite: two equal constants give 0,
  not NaN.

  Args:
    x: predictions, Array of shape `[num_samples]` or `[num_samples, num_dims]`.
    y: targets, same shape as `x`.
    eps: added to the denominator.

  Returns:
    Array of shape `[]` (rank-1 inputs) or `[num_dims]`: one CCC per dimension.

  Raises:
    ValueError: if the shapes of `x` and `y` differ.
  """
  _checks.check_same_shape("x", x, "y", y)
  mean_x, mean_y = jnp.mean(x, axis=0), jnp.mean(y, axis=0)
  cov = jnp.mean((x - mean_x) * (y - mean_y), axis=0)
  var_x = jnp.mean(jnp.square(x - mean_x), axis=0)
  var_y = jnp.mean(jnp.square(y - mean_y), axis=0)
  return 2.0 * cov / (var_x + var_y + jnp.square(mean_x - mean_y) + eps)


def ccc_loss(
  predictions: jax.Array, targets: jax.Array, reduction: str = "mean", eps: float = 1e-8
) -> jax.Array:
  """`1 - CCC` per output dimension, reduced over the dimensions.

  The CCC is computed over the batch, so the loss is a batch-level (not per-sample) quantity.
  With the default `reduction="mean"` the valence/arousal loss is
  `1 - (CCC_valence + CCC_arousal) / 2`, on the same scale as the ABAW challenge score;
  `"sum"` gives `2 - CCC_valence - CCC_arousal`, as losses summed over dimensions.

  Args:
    predictions: Array of shape `[batch]` or `[batch, num_dims]`.
    targets: same shape as `predictions`.
    reduction: `"mean"` or `"sum"` over the output dimensions.
    eps: see `ccc`.

  Returns:
    Scalar loss in `[0, 2 * num_dims]` (`"sum"`) or `[0, 2]` (`"mean"`).

  Raises:
    ValueError: on a shape mismatch or an unknown `reduction`.
  """
  reducers = {"mean": jnp.mean, "sum": jnp.sum}
  if reduction not in reducers:
    raise ValueError(f"`reduction` must be one of {sorted(reducers)}, got {reduction!r}.")
  _checks.check_same_shape("predictions", predictions, "targets", targets)
  return reducers[reduction](1.0 - ccc(predictions, targets, eps=eps))


def task_loss(outputs: jax.Array, batch: dict[str, jax.Array], task: str) -> jax.Array:
  """The supervised loss of a task, dispatched by name.

  Args:
    outputs: model outputs. `classification`: logits, Array of shape `[batch, num_classes]`;
      `regression`: Array of shape `[batch, K]`, one column per target.
    batch: reads `batch["y"]`: integer class indices of shape `[batch]` (classification),
      or targets of shape `[batch, K]` (regression). Other keys are ignored.
    task: `"classification"` (mean softmax cross-entropy) or `"regression"` (`ccc_loss`
      averaged over the K targets).

  Returns:
    Scalar loss.

  Raises:
    ValueError: on an unknown `task` or mismatched shapes.
  """
  if task == "classification":
    return softmax_cross_entropy(outputs, batch[TARGET_KEY])
  if task == "regression":
    targets = batch[TARGET_KEY].reshape(outputs.shape[0], -1)
    _checks.check_same_shape("outputs", outputs, "targets", targets)
    return ccc_loss(outputs, targets)
  raise ValueError(f"`task` must be 'classification' or 'regression', got {task!r}.")
