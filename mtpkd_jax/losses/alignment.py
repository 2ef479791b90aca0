"""CMKT's latent alignment losses between pooled weak- and strong-modality embeddings.

`alignment_loss(z_w, z_s, kind)` picks one by name: `"dcca"` (deep CCA, the default),
`"cosine"` or `"mse"`. As in `distill`, the student (weak modality) comes first, the teacher
(the frozen strong encoder) second, and the teacher's gradient is stopped. Every loss is
minimised.

Deep CCA (Andrew et al., 2013) maximises the total canonical correlation of two batches:
with centred batches `X [B, d1]`, `Y [B, d2]` and a ridge `r`,

  Σ11 = X^T X / (B - 1) + r I,  Σ22 = Y^T Y / (B - 1) + r I,  Σ12 = X^T Y / (B - 1),

the canonical correlations are the singular values of `T = Σ11^{-1/2} Σ12 Σ22^{-1/2}` and
the loss is `-sum_i σ_i(T)` (all `min(d1, d2)` of them), in `[-min(d1, d2), 0]`.

Why it is computed the way it is (finite values and gradients on rank-deficient and
constant batches):

* Whitening by triangular factors instead of symmetric square roots. For `Σ11 = R1^T R1`,
  `R1^{-T} = Q Σ11^{-1/2}` with `Q` orthogonal, so `R1^{-T} Σ12 R2^{-1}` has the same
  singular values as `T`. `R1` comes from the QR factorisation of
  `[X / sqrt(B - 1); sqrt(r) I]` (`R^T R = Σ11`), and `X R1^{-1} / sqrt(B - 1)` is the top
  of its `Q`, so the whitened cross-covariance is `Q1_top^T Q2_top`: no covariance is formed
  or inverted (float32 keeps its accuracy when `Σ11` is ill-conditioned, as for a batch
  smaller than the width), the ridge keeps `R1` invertible whatever the batch, and the QR
  factorisation's derivative has no `1 / (λ_i - λ_j)` terms, unlike `eigh`'s, which is NaN
  when eigenvalues repeat, as they do for a constant batch (`Σ11 = r I`).
* The sum of singular values is differentiated through `jnp.linalg.svd` safely: the
  derivative of the singular values alone is `diag(U^T dM V)`, so the gradient of their sum
  is `U V^T`, with none of the `1 / (σ_i^2 - σ_j^2)` terms that make the derivatives of `U`
  and `V` NaN for repeated singular values (the sum is a symmetric function of a repeated
  block, so the rotation chosen inside the block does not matter). At a zero singular value
  (no correlation in some direction, or a constant student batch) the trace norm is not
  differentiable and `U V^T` is one of its subgradients: a collapsed student still gets a
  gradient towards directions correlated with the teacher.
"""

import jax
import jax.numpy as jnp

from mtpkd_jax.losses import _checks, distill


def _whitened(z_c: jax.Array, ridge: float) -> jax.Array:
  """`z_c R^{-1} / sqrt(B - 1)` `[B, d]`, where `R^T R = z_c^T z_c / (B - 1) + ridge I`.

  `R` and the result come from one QR factorisation of `[z_c / sqrt(B - 1); sqrt(ridge) I]`
  (`[B + d, d]`): the top `B` rows of its `Q`. The covariance is never formed, so its condition
  number is not squared.
  """
  batch, width = z_c.shape
  stacked = jnp.concatenate(
    [z_c / jnp.sqrt(batch - 1.0), jnp.sqrt(ridge) * jnp.eye(width, dtype=z_c.dtype)]
  )
  return jnp.linalg.qr(stacked)[0][:batch]


def deep_cca(x: jax.Array, y: jax.Array, ridge: float = 1e-3) -> jax.Array:
  """Negative total canonical correlation of two batches (deep CCA's objective, minimised).

  Population moments use `B - 1`, and the ridge is added to each covariance, as in
  Andrew et al. (2013) and the widely used PyTorch port (`Michaelvll/DeepCCA`, whose
  default ridge, `1e-3`, this is). Computed in float32 at least.

  A batch of `B` examples spans at most `B - 1` centred directions, so when a width reaches
  `B - 1` the two batches can be almost perfectly correlated by chance and the loss saturates
  near `-min(d1, d2, B - 1)`: keep the aligned widths well below the batch size (or raise
  the ridge towards the features' variance).

  Args:
    x: student (weak-modality) embeddings, Array of shape `[batch, d1]`.
    y: teacher (strong-modality) embeddings, Array of shape `[batch, d2]`; gradient stopped.
      The widths may differ.
    ridge: `r > 0` added to the diagonal of both covariances; it bounds every correlation
      below 1 and keeps a rank-deficient batch (`batch <= d`, constant or collinear
      features) well defined.

  Returns:
    Scalar `-sum_i ρ_i` in `[-min(d1, d2), 0]`.

  Raises:
    ValueError: if an input is not rank 2, the batch sizes differ, the batch has fewer than
      2 examples, or `ridge <= 0`.
  """
  _checks.check_matrices("x", x, "y", y, axes=(0,))
  if x.shape[0] < 2:
    raise ValueError(f"`x` and `y` need a batch of at least 2 examples, got {x.shape[0]}.")
  if not ridge > 0:
    raise ValueError(f"`ridge` must be positive, got {ridge}.")
  dtype = jnp.promote_types(x.dtype, jnp.float32)
  x = x.astype(dtype)
  y = jax.lax.stop_gradient(y).astype(dtype)
  x_c, y_c = x - jnp.mean(x, axis=0), y - jnp.mean(y, axis=0)
  # R_x^{-T} Σ12 R_y^{-1}, with R^T R the Cholesky factorisation of each covariance.
  whitened = _whitened(x_c, ridge).T @ _whitened(y_c, ridge)
  return -jnp.sum(jnp.linalg.svd(whitened, compute_uv=False))


def mse(x: jax.Array, y: jax.Array) -> jax.Array:
  """Squared error averaged over batch and features; `y`'s gradient is stopped.

  Args:
    x: student embeddings, Array of shape `[batch, dim]`.
    y: teacher embeddings, Array of shape `[batch, dim]`.

  Returns:
    Scalar loss.

  Raises:
    ValueError: if `x` is not rank 2 or the shapes differ.
  """
  _checks.check_matrices("x", x, "y", y)
  return jnp.mean(jnp.square(x - jax.lax.stop_gradient(y)))


# name -> (loss, the parameters it takes besides the two batches).
_LOSSES = {
  "dcca": (deep_cca, ("ridge",)),
  "cosine": (distill.cosine_distance, ()),
  "mse": (mse, ()),
}


KINDS = tuple(_LOSSES)


def alignment_loss(z_w: jax.Array, z_s: jax.Array, kind: str = "dcca", **params) -> jax.Array:
  """The alignment loss called `kind` between pooled embeddings.

  Args:
    z_w: the weak modality's pooled embeddings, Array of shape `[batch, d_w]`.
    z_s: the strong modality's pooled embeddings, Array of shape `[batch, d_s]`; gradient
      stopped.
    kind: `"dcca"` (`deep_cca`), `"cosine"` (`distill.cosine_distance`, mean `1 - cos`) or
      `"mse"`. `"cosine"` and `"mse"` need `d_w == d_s`; `"dcca"` does not.
    **params: the loss's own parameters: `ridge` for `"dcca"`; none for the others.

  Returns:
    Scalar loss.

  Raises:
    ValueError: on an unknown `kind`, parameters the loss does not take, or shapes it
      cannot take.
  """
  if kind not in _LOSSES:
    raise ValueError(f"`kind` must be one of {tuple(_LOSSES)}, got {kind!r}.")
  loss, allowed = _LOSSES[kind]
  if unknown := sorted(set(params) - set(allowed)):
    raise ValueError(
      f"The {kind!r} alignment takes {list(allowed) or 'no parameters'}, got {unknown}."
    )
  return loss(z_w, z_s, **params)
