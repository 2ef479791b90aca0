"""CMKT's translation loss: the decoded weak sequence against the strong encoder's sequence."""

import jax
import jax.numpy as jnp

from mtpkd_jax.losses import _checks

KINDS = ("l1", "mse")


def translation_loss(
  decoded: jax.Array, target: jax.Array, mask: jax.Array | None = None, kind: str = "l1"
) -> jax.Array:
  """Mean absolute (`"l1"`) or squared (`"mse"`) error over the valid steps of a batch.

  Every valid step of the batch weighs the same (a long sequence counts more than a short
  one), and the error is averaged over the feature axis too:
  `sum_{b, t valid, f} e(decoded - target) / (num_valid_steps * features)`. Padded steps
  never count, whatever they hold (NaN included), and get a zero gradient. A batch without
  a valid step gives 0.

  Args:
    decoded: the decoder's output `D(z_w)`, Array of shape `[batch, steps, features]`.
    target: the strong encoder's sequence `E_s(x_s)`, same shape; its gradient is stopped
      (the strong encoder is frozen).
    mask: Bool array of shape `[batch, steps]`, True on valid steps; all valid if None.
    kind: `"l1"` or `"mse"`.

  Returns:
    Scalar loss, in float32 at least.

  Raises:
    ValueError: on an unknown `kind`, `decoded` not of rank 3, `target` of another shape,
      or a `mask` that does not match their first two axes.
  """
  if kind not in KINDS:
    raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}.")
  _checks.check_rank("decoded", decoded, 3)
  _checks.check_same_shape("decoded", decoded, "target", target)
  if mask is None:
    mask = jnp.ones(decoded.shape[:2], bool)
  elif mask.shape != decoded.shape[:2]:
    raise ValueError(
      f"`mask` must have `decoded`'s [batch, steps] shape {decoded.shape[:2]}, got {mask.shape}."
    )
  dtype = jnp.promote_types(decoded.dtype, jnp.float32)
  error = decoded.astype(dtype) - jax.lax.stop_gradient(target).astype(dtype)
  valid = mask.astype(bool)[..., None]
  # `where` before the error function: padded NaN never reaches the sum or the gradient.
  error = jnp.where(valid, error, 0.0)
  error = jnp.abs(error) if kind == "l1" else jnp.square(error)
  count = jnp.maximum(jnp.sum(mask.astype(dtype)), 1.0) * decoded.shape[-1]
  return jnp.sum(error) / count
