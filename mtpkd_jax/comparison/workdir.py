"""A workdir one training at a time, and one it can write.

Two trainings in one workdir would interleave their checkpoints and move each other's
stages aside: :func:`lock` holds an exclusive ``flock`` on ``<workdir>/.lock`` for the whole
run, so a second training there stops at once. The kernel releases the lock when its
process ends, however it ends: a killed run leaves nothing to clean up. (``flock`` guards
processes of one machine, and of several on most network file systems; two machines sharing
a workdir over a file system without it are not guarded.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"


def check_writable(workdir: str | Path) -> None:
  """Fails at once if ``workdir`` or a folder in it cannot be written.

  A workdir that does not exist yet needs only its nearest existing parent to be writable.

  Raises:
    NotADirectoryError: if ``workdir`` is a file.
    PermissionError: naming the first folder that is read-only.
  """
  workdir = Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise NotADirectoryError(f"--workdir {workdir} is a file, not a folder.")
  if workdir.exists():
    folders = [workdir, *(p for p in workdir.rglob("*") if p.is_dir())]
  else:  # It will be created in its nearest existing parent: nothing else there matters.
    folders = [next(p for p in workdir.parents if p.exists())]
  for folder in folders:
    if not os.access(folder, os.W_OK | os.X_OK):
      raise PermissionError(
        f"--workdir {workdir}: {folder} is read-only; a training writes its checkpoints "
        "there. Make it writable (chmod -R u+w) or give another --workdir."
      )


@contextlib.contextmanager
def lock(workdir: str | Path) -> Iterator[None]:
  """Holds ``<workdir>/.lock`` while the block runs; the workdir is created if missing.

  Raises:
    RuntimeError: naming the workdir, if another training holds it.
  """
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / LOCK_FILE
  with open(path, "a") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise RuntimeError(
        f"--workdir {workdir} is in use by another training (it holds {path}). Wait for it "
        "to finish, or give this one another --workdir; a training that was killed holds "
        "nothing."
      ) from None
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
