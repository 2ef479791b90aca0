"""Builds a licensed dataset from the files you downloaded, once, into a TFDS data directory.

  python -m experiments.build_dataset --dataset=biovid/part_a_binary --manual_dir=~/BioVid
  python -m experiments.build_dataset --dataset=affwild2/va --manual_dir=~/Aff-Wild2 \\
      --data_dir=~/tensorflow_datasets --options='{"clip_length": 16}'

``--options`` changes config fields (JSON); train with the same ``--config.dataset_options``
and ``--config.data_dir`` to use the build. ``--num_workers`` sets the processes that decode
units at once (default: one per core; the dataset is the same whatever the number). It
prints the build's report (units skipped or repaired for corrupt or missing files) and fails
when too many were bad.
"""

import json
import sys

from absl import app, flags

from mtpkd_jax.data import pipeline
from mtpkd_jax.data.builders import base, files, report

_DATASET = flags.DEFINE_string("dataset", None, "<builder>/<config>, e.g. biovid/part_a_binary.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder holding the downloaded files.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory (~/tensorflow_datasets).")
_OPTIONS = flags.DEFINE_string("options", None, "Config fields to change, as a JSON object.")
_NUM_WORKERS = flags.DEFINE_integer(
  "num_workers",
  None,
  "Processes decoding units (videos, recordings, trials) at once; default: one per core. "
  "The dataset written is the same, byte for byte, whatever the number.",
  lower_bound=1,
)
flags.mark_flag_as_required("dataset")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  options = None
  if _OPTIONS.value:
    try:
      options = json.loads(_OPTIONS.value)
    except json.JSONDecodeError as error:
      raise app.UsageError(f"--options is not valid JSON ({error}): {_OPTIONS.value!r}") from None
    if not isinstance(options, dict):
      raise app.UsageError(f"--options must be a JSON object of config fields, got {options!r}.")
  try:
    dataset_builder = pipeline.builder(_DATASET.value, _DATA_DIR.value, options, _MANUAL_DIR.value)
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  if not isinstance(dataset_builder, base.ManualBuilder):
    raise app.UsageError(f"{_DATASET.value} is not downloaded by hand; it builds on first use.")
  try:
    built = dataset_builder.download_and_prepare(progress=True, num_workers=_NUM_WORKERS.value)
  except (files.MissingFilesError, report.TooManyBadFilesError) as error:
    # A missing download fails before anything is written, a bad build after its report.
    written = dataset_builder.report_path.exists()
    sys.exit(f"{error}\nReport: {dataset_builder.report_path}" if written else str(error))
  if built is None:
    print(f"{_DATASET.value} is built already, in {dataset_builder.data_dir}.")
  else:
    print(
      f"{built.summary()}\nWritten to {dataset_builder.data_dir}; report in "
      f"{dataset_builder.report_path}."
    )


if __name__ == "__main__":
  app.run(main)
