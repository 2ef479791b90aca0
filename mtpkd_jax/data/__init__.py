"""Data: dataset builders, subject-independent splits, in-memory loading and batching.

* :mod:`~mtpkd_jax.data.schema`: what a dataset holds (:class:`~mtpkd_jax.data.Schema`).
* :mod:`~mtpkd_jax.data.features`: a features ``.npz`` file, checked and converted.
* :mod:`~mtpkd_jax.data.synthetic_affect`, :mod:`~mtpkd_jax.data.synthetic_sentiment`: the
  embedded synthetic datasets.
* :mod:`~mtpkd_jax.data.records`: the streaming array_record writer, and a reader that
  decodes only the features read.
* :mod:`~mtpkd_jax.data.table`: random-access tables, in memory or read from disk.
* :mod:`~mtpkd_jax.data.splits`: subject-independent folds and holdouts.
* :mod:`~mtpkd_jax.data.pipeline`: datasets opened by name, batched with grain, read ahead.
* :mod:`~mtpkd_jax.data.builders`: the licensed datasets, built from a user's downloads.

The names below are imported from their modules on first use (the modules import TFDS and
grain; ``mtpkd_jax.data.schema`` alone does not).
"""

from mtpkd_jax import _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
  __name__,
  {
    "features": ("FeaturesNpz", "inspect_npz"),
    "pipeline": ("Dataset", "ReadAhead", "batch_dataset", "batches", "builder", "open_dataset"),
    "schema": ("Modality", "Schema", "Task", "mask_key"),
    "splits": ("holdout", "subject_folds"),
    "synthetic_affect": ("SyntheticAffect", "SyntheticAffectConfig"),
    "table": ("ArrayTable", "RecordTable", "Table"),
  },
)
