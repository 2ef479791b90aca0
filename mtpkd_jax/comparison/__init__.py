"""Side-by-side comparison of methods over runs: summary tables and plots.

* :mod:`~mtpkd_jax.comparison.runner`: :func:`~mtpkd_jax.comparison.run`, the comparison of
  a config's methods over folds and seeds (what ``experiments/train.py`` calls).
* :mod:`~mtpkd_jax.comparison.budgets`: a label-budget sweep, one comparison per budget.
* :mod:`~mtpkd_jax.comparison.tuning`: each method's candidate picked on validation, per run.
* :mod:`~mtpkd_jax.comparison.report`: the results tables (markdown, CSV, JSON).
* :mod:`~mtpkd_jax.comparison.plots`: paired differences, learning curves, similarity and
  transport plans.
* :mod:`~mtpkd_jax.comparison.predict`: a finished run's test-time path on new data.
* :mod:`~mtpkd_jax.comparison.environment`: what the comparison ran on.
* :mod:`~mtpkd_jax.comparison.settings`: every setting checked before a workdir is touched.
* :mod:`~mtpkd_jax.comparison.workdir`: one training at a time, in a workdir it can write.

The names below are imported from their modules on first use.
"""

from mtpkd_jax import _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
  __name__,
  {
    "budgets": ("budget_dir",),
    "predict": ("predict_file",),
    "report": ("markdown_table", "summarize", "write_reports"),
    "runner": ("run",),
  },
)
