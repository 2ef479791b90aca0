"""Point-to-point and relational distillation losses, and the T-Net's hallucination loss.

Every loss takes the student (or prediction) first and the teacher (or target) second, and
stops the gradient through the teacher, so a frozen teacher can be passed as it is (only
`cosine_distance` can opt out, for MT-PKDOT's mutual stage-2 alignment). Inputs are batches of
embeddings, Array of shape `[batch, dim]`, unless stated otherwise.
"""

import jax
import jax.numpy as jnp
import optax

from mtpkd_jax.losses import _checks


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Scales the last axis to unit L2 norm, `x / max(||x||, eps)`, with finite gradients at 0."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), eps**2))


def _squared_distances(x: jax.Array, y: jax.Array) -> jax.Array:
  """Pairwise squared Euclidean distances `[n, d] x [m, d] -> [n, m]`, clipped at 0."""
  d2 = (
    jnp.sum(jnp.square(x), axis=-1)[:, None]
    + jnp.sum(jnp.square(y), axis=-1)[None, :]
    - 2.0 * x @ y.T
  )
  return jnp.maximum(d2, 0.0)


def cosine_distance(
  z_s: jax.Array, z_t: jax.Array, stop_teacher_gradient: bool = True, eps: float = 1e-8
) -> jax.Array:
  """Mean over the batch of `1 - cos(z_s, z_t)` (M2PKD feature matching).

  A zero vector has cosine 0 with anything (distance 1), with finite gradients.

  Args:
    z_s: student embeddings, Array of shape `[batch, dim]`.
    z_t: teacher embeddings, Array of shape `[batch, dim]`.
    stop_teacher_gradient: `False` lets gradients reach `z_t`, as in MT-PKDOT stage 2, where
      the joint embedding and the adapters are aligned mutually.
    eps: lower bound on each vector's norm.

  Returns:
    Scalar in `[0, 2]`.

  Raises:
    ValueError: if `z_s` is not rank 2 or the shapes differ.
  """
  _checks.check_matrices("z_s", z_s, "z_t", z_t)
  if stop_teacher_gradient:
    z_t = jax.lax.stop_gradient(z_t)
  cos = jnp.sum(_l2_normalize(z_s, eps) * _l2_normalize(z_t, eps), axis=-1)
  return jnp.mean(1.0 - cos)


def logit_kd(logits_s: jax.Array, logits_t: jax.Array, temperature: float) -> jax.Array:
  """Hinton et al. (2015) distillation: `T^2 KL(softmax(t / T) || softmax(s / T))`.

  The `T^2` factor keeps gradient magnitudes comparable across temperatures.

  Args:
    logits_s: student logits, Array of shape `[batch, num_classes]`.
    logits_t: teacher logits, Array of shape `[batch, num_classes]`.
    temperature: softening temperature `T > 0`.

  Returns:
    Scalar: the KL divergence summed over classes, averaged over the batch, times `T^2`.

  Raises:
    ValueError: if `logits_s` is not rank 2 or the shapes differ.
  """
  _checks.check_matrices("logits_s", logits_s, "logits_t", logits_t)
  log_p_t = jax.nn.log_softmax(jax.lax.stop_gradient(logits_t) / temperature, axis=-1)
  log_p_s = jax.nn.log_softmax(logits_s / temperature, axis=-1)
  kl = jnp.sum(jnp.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
  return temperature**2 * jnp.mean(kl)


def similarity_preserving(z_s: jax.Array, z_t: jax.Array) -> jax.Array:
  """Similarity-preserving KD (Tung & Mori, 2019).

  `G = Z Z^T`, each row L2-normalised, loss `||G_t - G_s||_F^2 / B^2`. Invariant to a global
  rescaling of either batch (not to rescaling single samples, which also changes the other
  rows' entries in that sample's column).

  Args:
    z_s: student embeddings, Array of shape `[batch, dim_s]`.
    z_t: teacher embeddings, Array of shape `[batch, dim_t]`; the widths may differ.

  Returns:
    Scalar loss.

  Raises:
    ValueError: if either input is not rank 2 or the batch sizes differ.
  """
  _checks.check_matrices("z_s", z_s, "z_t", z_t, axes=(0,))
  g_s = _l2_normalize(z_s @ z_s.T)
  g_t = _l2_normalize(jax.lax.stop_gradient(z_t @ z_t.T))
  return jnp.sum(jnp.square(g_t - g_s)) / z_s.shape[0] ** 2


def _rkd_distances(z: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Pairwise Euclidean distances divided by their off-diagonal mean, `[B, B]`.

  As in the authors' code, squared distances are clamped at `eps` before the square root
  (finite gradients) and the diagonal is set to 0, so every off-diagonal entry is positive and
  their mean equals the authors' mean over positive entries.
  """
  batch = z.shape[0]
  d = jnp.sqrt(jnp.maximum(_squared_distances(z, z), eps))
  d = jnp.where(jnp.eye(batch, dtype=bool), 0.0, d)
  mean = jnp.sum(d) / max(batch * (batch - 1), 1)
  return d / jnp.maximum(mean, eps)


def _rkd_angles(z: jax.Array) -> jax.Array:
  """Cosines `<e_ij, e_ik>` with `e_ij = normalise(z_j - z_i)`, Array of shape `[B, B, B]`."""
  e = _l2_normalize(z[None, :, :] - z[:, None, :])
  return jnp.einsum("ijd,ikd->ijk", e, e)


def relational(
  z_s: jax.Array, z_t: jax.Array, distance_weight: float = 25.0, angle_weight: float = 50.0
) -> jax.Array:
  """Relational KD (Park et al., 2019): distance-wise plus angle-wise potentials.

  Distance term: smooth-L1 (Huber, delta 1) between the mean-normalised pairwise distance
  matrices, averaged over all `B^2` entries. Angle term: smooth-L1 between the cosines of the
  angles `z_j - z_i, z_k - z_i` over all `B^3` triplets (degenerate ones contribute 0 to
  both), averaged. Memory is `O(B^2 dim + B^3)`. Defaults are the paper's weights.

  Args:
    z_s: student embeddings, Array of shape `[batch, dim_s]`.
    z_t: teacher embeddings, Array of shape `[batch, dim_t]`; the widths may differ.
    distance_weight: weight of the distance term.
    angle_weight: weight of the angle term.

  Returns:
    Scalar `distance_weight * L_distance + angle_weight * L_angle`.

  Raises:
    ValueError: if either input is not rank 2 or the batch sizes differ.
  """
  _checks.check_matrices("z_s", z_s, "z_t", z_t, axes=(0,))
  z_t = jax.lax.stop_gradient(z_t)
  distance = jnp.mean(optax.huber_loss(_rkd_distances(z_s), _rkd_distances(z_t), delta=1.0))
  angle = jnp.mean(optax.huber_loss(_rkd_angles(z_s), _rkd_angles(z_t), delta=1.0))
  return distance_weight * distance + angle_weight * angle


def mmd(
  x: jax.Array,
  y: jax.Array,
  num_kernels: int = 5,
  multiplier: float = 2.0,
  bandwidth: float | None = None,
  eps: float = 1e-12,
) -> jax.Array:
  """Multi-kernel Gaussian maximum mean discrepancy, biased (V-statistic) estimator.

  `MMD^2 = mean(K_xx) + mean(K_yy) - 2 mean(K_xy)` with
  `K(a, b) = sum_i exp(-||a - b||^2 / s_i)` and bandwidths
  `s_i = base * multiplier^(i - num_kernels // 2)`, i.e. centred on `base` (for the defaults:
  base/4, base/2, base, 2 base, 4 base). When `bandwidth` is `None`, `base` is the mean
  squared distance over distinct pairs of the pooled sample `[x; y]`, computed without
  gradient, as in the DAN/JAN reference implementations, and floored at `eps` so that a
  sample of coincident points gives `MMD^2 = 0` with finite gradients.

  Args:
    x: first sample (prediction), Array of shape `[n, dim]`.
    y: second sample (target), Array of shape `[m, dim]`; its gradient is stopped.
    num_kernels: number of Gaussian kernels.
    multiplier: ratio between consecutive bandwidths.
    bandwidth: the central bandwidth `base`, or `None` for the data-driven choice.
    eps: lower bound on the data-driven `base`.

  Returns:
    Scalar `MMD^2 >= 0` (up to rounding).

  Raises:
    ValueError: if either input is not rank 2 or the widths differ.
  """
  _checks.check_matrices("x", x, "y", y, axes=(1,))
  y = jax.lax.stop_gradient(y)
  n = x.shape[0]
  pooled = jnp.concatenate([x, y], axis=0)
  d2 = _squared_distances(pooled, pooled)
  if bandwidth is None:
    num = pooled.shape[0]
    base = jax.lax.stop_gradient(jnp.sum(d2) / (num * num - num))
    base = jnp.maximum(base, eps)
  else:
    base = bandwidth
  scales = base * multiplier ** (jnp.arange(num_kernels) - num_kernels // 2)
  k = jnp.sum(jnp.exp(-d2[..., None] / scales), axis=-1)
  return jnp.mean(k[:n, :n]) + jnp.mean(k[n:, n:]) - 2.0 * jnp.mean(k[:n, n:])


def hallucination_loss(pred: jax.Array, target: jax.Array, kind: str = "mse") -> jax.Array:
  """The T-Net's loss between hallucinated and real privileged features.

  Args:
    pred: hallucinated features `H(f_v)`, Array of shape `[batch, dim]`.
    target: real privileged features `f_p`, Array of shape `[batch, dim]`; gradient stopped.
    kind: `"mse"` (squared error averaged over batch and features) or `"mmd"` (`mmd` with
      its defaults: 5 kernels spaced by a factor 2, data-driven bandwidth).

  Returns:
    Scalar loss.

  Raises:
    ValueError: on an unknown `kind` or mismatched shapes.
  """
  _checks.check_matrices("pred", pred, "target", target)
  target = jax.lax.stop_gradient(target)
  if kind == "mse":
    return jnp.mean(jnp.square(pred - target))
  if kind == "mmd":
    return mmd(pred, target)
  raise ValueError(f"`kind` must be 'mse' or 'mmd', got {kind!r}.")
