"""Model-agnostic training infrastructure.

* :mod:`~mtpkd_jax.train.parallel`: meshes, ``data_parallel`` (shard_map) and ``pmap_step``
  over one per-device step.
* :mod:`~mtpkd_jax.train.distributed`: starting ``jax.distributed``, process 0, barriers, a
  process's batch rows.
* :mod:`~mtpkd_jax.train.state`: ``TrainState`` (params, batch_stats, opt_state, step).
* :mod:`~mtpkd_jax.train.step`: ``make_train_step(loss_fn)``, the per-device update.
* :mod:`~mtpkd_jax.train.optimizers`: Adam with per-part learning rates.
* :mod:`~mtpkd_jax.train.checkpoint`: per-stage orbax checkpoints, best copy, stage output,
  ``load_stage_output``.
* :mod:`~mtpkd_jax.train.provenance`: what a stage was built from, and stale stages.
* :mod:`~mtpkd_jax.train.loop`: :func:`~mtpkd_jax.train.loop.fit`, the host loop of one stage.
* :mod:`~mtpkd_jax.train.stage`: :func:`~mtpkd_jax.train.stage.fit`, one stage end to end
  (data, step, loop).
* :mod:`~mtpkd_jax.train.variables`: Flax variables surgery, ``.npz`` weights.
* :mod:`~mtpkd_jax.train.metrics`, :mod:`~mtpkd_jax.train.writers`: evaluation metrics and
  the TensorBoard/JSON-lines writer.

The names below are imported from their modules on first use (the modules import orbax,
grain and TFDS; ``mtpkd_jax.train.parallel`` alone does not).
"""

from mtpkd_jax import _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
  __name__,
  {
    "checkpoint": ("StageCheckpointer", "load_stage_output"),
    "loop": ("FitResult", "PartSelection", "StageRun"),
    "metrics": ("mean_and_stderr",),
    "optimizers": ("adam",),
    "parallel": ("DATA_AXIS", "data_parallel", "make_mesh", "pmap_step", "shard_batch"),
    "state": ("TrainState", "create_train_state"),
    "step": ("make_train_step",),
    "writers": ("MetricWriter",),
  },
)
