"""The API reference builds from the docstrings, with every Sphinx warning an error."""

import shutil
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).parent.parent / "docs" / "api"


def test_api_reference_builds_without_warnings(tmp_path):
  # A copy: autosummary writes its generated pages beside the sources.
  source = shutil.copytree(DOCS, tmp_path / "api", ignore=shutil.ignore_patterns("_autosummary"))
  command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
  result = subprocess.run(
    [*command, str(source), str(tmp_path / "html")], capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, f"sphinx-build failed:\n{result.stderr[-6000:]}"
  ot_page = (tmp_path / "html" / "_autosummary" / "mtpkd_jax.ot.html").read_text()
  assert "mtpkd_jax.ot.loss.html#mtpkd_jax.ot.loss.structural_ot_loss" in ot_page
