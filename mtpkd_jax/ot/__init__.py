"""The fused structural-OT core.

Modules, in the order data flows through them:

* :mod:`~mtpkd_jax.ot.similarity`: cosine-similarity matrices, shift, anchors, centroid.
* :mod:`~mtpkd_jax.ot.schedules`: ``Fixed``, ``Tolerance`` and ``Anneal`` epsilon schedules.
* :mod:`~mtpkd_jax.ot.sinkhorn`: the library's batched log-domain Sinkhorn (``fused``).
* :mod:`~mtpkd_jax.ot.ott_backend`: the same problems solved by ott-jax (``ott``).
* :mod:`~mtpkd_jax.ot.divergence`: debiased Sinkhorn divergences of point clouds.
* :mod:`~mtpkd_jax.ot.loss`: MT-PKDOT's ``structural_ot_loss``, and its ``structural_plan``.
"""

from mtpkd_jax.ot.divergence import DivergenceOutput, sinkhorn_divergence
from mtpkd_jax.ot.loss import structural_ot_loss, structural_plan
from mtpkd_jax.ot.schedules import Anneal, Fixed, Schedule, Tolerance, make_schedule
from mtpkd_jax.ot.sinkhorn import SinkhornOutput, solve, transport_plan

__all__ = [
  "Anneal",
  "DivergenceOutput",
  "Fixed",
  "Schedule",
  "SinkhornOutput",
  "Tolerance",
  "make_schedule",
  "sinkhorn_divergence",
  "solve",
  "structural_ot_loss",
  "structural_plan",
  "transport_plan",
]
