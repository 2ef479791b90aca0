"""The examples run as a user runs them, and do what they say."""

import re
import runpy
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # The examples train.

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_ot_loss_training_loop_lowers_the_held_out_loss(capsys):
  runpy.run_path(str(EXAMPLES / "ot_loss_training_loop.py"), run_name="__main__")
  out = capsys.readouterr().out
  before, after = map(float, re.search(r"before (\S+), after (\S+)", out).groups())
  assert len(re.findall(r"^step +\d+: training loss", out, re.MULTILINE)) == 7
  assert after < 0.5 * before, out
