"""The build report: skipped units and dropped examples are counted and listed; too many, or
no example written, fail the build; excluded units are listed, not counted as bad."""

import json

import pytest

from mtpkd_jax.data.builders import report as report_lib


def _report(units, bad, max_bad_fraction=0.25):
  report = report_lib.BuildReport("demo/cfg", max_bad_fraction)
  for i in range(units):
    report.units += 1
    if i < bad:
      report.skip(f"u{i}", report_lib.BadFile(f"/d/u{i}.csv", "has 3 rows, needs 10"))
    else:
      report.examples += 1
  return report


def test_a_tolerated_fraction_passes_and_lists_every_skip(tmp_path):
  report = _report(units=8, bad=2)
  report.repair("u5", "/d/u5/00001.jpg", "unreadable image: zero-filled")
  report.check()
  summary = report.summary()
  assert "8 units, 0 excluded, 2 skipped (25.0%), 6 examples written, 0 dropped" in summary
  assert "u1: /d/u1.csv: has 3 rows, needs 10" in summary
  assert "u5: /d/u5/00001.jpg: unreadable image" in summary
  report.write(tmp_path / "r.json")
  written = json.loads((tmp_path / "r.json").read_text())
  assert [e["unit"] for e in written["skipped"]] == ["u0", "u1"]


def test_more_than_the_fraction_fails_with_the_list():
  with pytest.raises(report_lib.TooManyBadFilesError, match=r"(?s)37.5%.*u2: /d/u2.csv"):
    _report(units=8, bad=3).check()


def test_no_example_written_fails_even_when_tolerated():
  with pytest.raises(report_lib.NoExampleWrittenError, match="No example written"):
    _report(units=2, bad=2, max_bad_fraction=1.0).check()
  # Units that load but yield nothing: nothing skipped, still nothing written.
  report = _report(units=3, bad=0, max_bad_fraction=1.0)
  report.examples = 0
  report.drop("u0[0]", "/d/labels", "no word in the segment")
  with pytest.raises(report_lib.NoExampleWrittenError, match=r"(?s)0 examples written.*u0\[0\]"):
    report.check()


def test_dropped_examples_count_toward_the_fraction():
  report = _report(units=4, bad=0, max_bad_fraction=0.1)
  report.examples = 18
  for i in range(2):
    report.drop(f"u0[{i}]", "/d/labels", "no word in the segment")
  report.check()  # 2 of 20 examples: 10.0%, at the limit.
  report.drop("u0[2]", "/d/labels", "no word in the segment")
  # 3 of 21 examples lost: 14.3%.
  with pytest.raises(report_lib.TooManyBadFilesError, match=r"(?s)14.3% of the examples.*u0\[2\]"):
    report.check()


def test_excluded_units_are_listed_but_neither_bad_nor_included():
  report = _report(units=10, bad=2, max_bad_fraction=0.25)
  for unit in ("u8", "u9"):
    report.exclude(unit, "/d/labels", "in none of the official folds")
  report.examples -= 2
  report.check()  # 2 skipped of the 8 included units: 25.0%, at the limit.
  assert "10 units, 2 excluded, 2 skipped (25.0%)" in report.summary()
  assert "u9: /d/labels: in none of the official folds" in report.summary()
  report.exclude("u7", "/d/labels", "in none of the official folds")
  report.examples -= 1
  with pytest.raises(report_lib.TooManyBadFilesError, match=r"28.6% of the units"):
    report.check()  # 2 of 7.
