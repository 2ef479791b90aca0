"""The workdir's checks: writable where a training writes, one training at a time."""

from pathlib import Path

import pytest

from mtpkd_jax.comparison import workdir as workdir_lib


def _read_only(monkeypatch, *folders):
  """``os.access`` says ``folders`` cannot be written (root may write anywhere)."""
  denied = {Path(f) for f in folders}
  monkeypatch.setattr(workdir_lib.os, "access", lambda path, mode: Path(path) not in denied)


def test_a_new_workdir_needs_only_its_parent_writable(tmp_path, monkeypatch):
  (tmp_path / "someone_elses").mkdir()
  _read_only(monkeypatch, tmp_path / "someone_elses")
  workdir_lib.check_writable(tmp_path / "new" / "run")  # A read-only sibling is not its own.
  _read_only(monkeypatch, tmp_path)
  with pytest.raises(PermissionError, match=rf"--workdir {tmp_path}/new/run: {tmp_path} is"):
    workdir_lib.check_writable(tmp_path / "new" / "run")


def test_an_existing_workdir_is_checked_to_its_last_folder(tmp_path, monkeypatch):
  deep = tmp_path / "run0" / "joint" / "checkpoints"
  deep.mkdir(parents=True)
  workdir_lib.check_writable(tmp_path)
  _read_only(monkeypatch, deep)
  with pytest.raises(PermissionError, match=rf"{deep} is read-only"):
    workdir_lib.check_writable(tmp_path)
  (tmp_path / "file").write_text("")
  with pytest.raises(NotADirectoryError, match="is a file"):
    workdir_lib.check_writable(tmp_path / "file")


def test_a_second_training_in_the_workdir_is_refused(tmp_path):
  with workdir_lib.lock(tmp_path / "w"):
    with pytest.raises(RuntimeError, match=r"in use by another training"):
      with workdir_lib.lock(tmp_path / "w"):
        pass
  with workdir_lib.lock(tmp_path / "w"):  # Released when the first ended.
    pass
