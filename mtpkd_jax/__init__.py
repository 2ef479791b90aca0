"""mtpkd_jax: privileged multimodal knowledge distillation in JAX/Flax.

Subpackages, imported on first use (``import mtpkd_jax`` imports none of them):

* :mod:`mtpkd_jax.ot`: the fused structural-OT core, :func:`~mtpkd_jax.ot.structural_ot_loss`.
* :mod:`mtpkd_jax.losses`: task, distillation, alignment and translation losses.
* :mod:`mtpkd_jax.models`: Flax encoders, the fusion block, heads; the encoder registry.
* :mod:`mtpkd_jax.data`: the dataset schema, features files, splits, loading and batching.
* :mod:`mtpkd_jax.methods`: the methods' registry, networks and training stages.
* :mod:`mtpkd_jax.train`: the data-parallel train step, checkpoints, the host loop.
* :mod:`mtpkd_jax.comparison`: the comparison of methods over runs, its report, predict.
* :mod:`mtpkd_jax.bench`: the benchmark harnesses of the ``experiments/bench_*`` apps.
"""

from mtpkd_jax import _lazy

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = _lazy.attach(
  __name__,
  submodules=("bench", "comparison", "data", "losses", "methods", "models", "ot", "train"),
)
