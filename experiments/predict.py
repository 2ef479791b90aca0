"""Predictions of a finished run's visual-only test-time path on a features file.

  python -m experiments.predict --workdir DIR --method mt_pkdot [--run 0] \\
      --input FILE.npz --output PRED.npz

Only the visual modality (``x_<visual>``, ``mask_<visual>``) of ``--input`` is read, in the
dtype training read (``schema.json``: uint8 for video, float32 for features files). Run ``r`` is
the folder ``config.json`` names (``run{r}_fold{r % num_folds}_seed{seed + r}``).
"""

from absl import app, flags

from mtpkd_jax.comparison import predict

_WORKDIR = flags.DEFINE_string("workdir", None, "A finished `experiments.train` workdir.")
_METHOD = flags.DEFINE_string("method", None, "The method whose test-time path predicts.")
_RUN = flags.DEFINE_integer(
  "run", 0, "Which run of the workdir's config.json (fold run % num_folds, seed seed + run)."
)
_INPUT = flags.DEFINE_string("input", None, "A features .npz holding x_<visual>.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the predictions (.npz).")
flags.mark_flags_as_required(["workdir", "method", "input", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  result = predict.predict_file(
    _WORKDIR.value, _METHOD.value, _INPUT.value, _OUTPUT.value, _RUN.value
  )
  print(f"Wrote {len(result['outputs'])} predictions to {_OUTPUT.value}.")


if __name__ == "__main__":
  app.run(main)
