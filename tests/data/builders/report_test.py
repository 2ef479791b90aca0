"""The build report: skipped units are counted and listed; too many fail the build."""

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
  assert "8 units, 2 skipped (25.0%" in summary
  assert "u1: /d/u1.csv: has 3 rows, needs 10" in summary
  assert "u5: /d/u5/00001.jpg: unreadable image" in summary
  report.write(tmp_path / "r.json")
  written = json.loads((tmp_path / "r.json").read_text())
  assert [e["unit"] for e in written["skipped"]] == ["u0", "u1"]


def test_more_than_the_fraction_fails_with_the_list():
  with pytest.raises(report_lib.TooManyBadFilesError, match=r"(?s)37.5%.*u2: /d/u2.csv"):
    _report(units=8, bad=3).check()


def test_no_usable_unit_fails_even_when_tolerated():
  with pytest.raises(report_lib.TooManyBadFilesError, match="No usable unit"):
    _report(units=2, bad=2, max_bad_fraction=1.0).check()
