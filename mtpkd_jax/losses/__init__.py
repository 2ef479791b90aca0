"""Loss functions: task losses, distillation losses, CMKT's alignment and translation losses.

* :mod:`~mtpkd_jax.losses.task`: cross-entropy, ``1 - CCC``, and the task's loss by kind.
* :mod:`~mtpkd_jax.losses.distill`: KD losses (cosine, logit KD, SPKD, RKD, MMD) and the
  T-Nets' hallucination loss.
* :mod:`~mtpkd_jax.losses.alignment`: CMKT's latent alignment (deep CCA, cosine, MSE).
* :mod:`~mtpkd_jax.losses.translation`: CMKT's masked translation loss (L1, MSE).
"""

from mtpkd_jax.losses.alignment import alignment_loss, deep_cca
from mtpkd_jax.losses.distill import (
  cosine_distance,
  hallucination_loss,
  logit_kd,
  mmd,
  relational,
  similarity_preserving,
)
from mtpkd_jax.losses.task import ccc, ccc_loss, softmax_cross_entropy, task_loss
from mtpkd_jax.losses.translation import translation_loss

__all__ = [
  "alignment_loss",
  "ccc",
  "ccc_loss",
  "cosine_distance",
  "deep_cca",
  "hallucination_loss",
  "logit_kd",
  "mmd",
  "relational",
  "similarity_preserving",
  "softmax_cross_entropy",
  "task_loss",
  "translation_loss",
]
