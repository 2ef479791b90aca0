"""`experiments.build_dataset`: bad flags are usage errors that name the flag."""

import pytest
from absl import app, flags
from absl.testing import flagsaver

from experiments import build_dataset


@pytest.fixture(autouse=True)
def _parsed_flags():
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


@pytest.mark.parametrize(
  "values, message",
  [
    ({"dataset": "biovid/nope"}, "Unknown dataset name 'biovid/nope'"),
    (
      {"dataset": "biovid/part_a_binary", "options": "{'window': 1}"},
      "--options is not valid JSON",
    ),
    ({"dataset": "biovid/part_a_binary", "options": "[1, 2]"}, "--options must be a JSON object"),
    ({"dataset": "biovid/part_a_binary", "options": '{"nope": 1}'}, "unknown fields \\['nope'\\]"),
    ({"dataset": "synthetic_affect/tiny", "manual_dir": "/x"}, "takes no `manual_dir`"),
  ],
)
def test_bad_flags_are_usage_errors_naming_them(values, message, tmp_path):
  with flagsaver.flagsaver(data_dir=str(tmp_path), **values):
    with pytest.raises(app.UsageError, match=message):
      build_dataset.main(["build_dataset"])


def test_a_missing_download_names_no_report_that_was_never_written(tmp_path, capsys):
  with flagsaver.flagsaver(
    dataset="biovid/part_a_binary", data_dir=str(tmp_path), manual_dir=str(tmp_path / "none")
  ):
    with pytest.raises(SystemExit) as exit_:
      build_dataset.main(["build_dataset"])
  assert "expected the manual download folder" in str(exit_.value.code)
  assert "Report:" not in str(exit_.value.code)
