"""What each stage was built from, so that a stale stage is retrained, never reused.

A stage's record (``<workdir>/<stage>/provenance.json``) holds its config section, the
fingerprints of its predecessors' saved outputs (and of the pretrained file a stage-0
encoder starts from), the dataset's fingerprint and a digest of its split. Before a stage
trains, :func:`ensure` compares the record it would write with the one on disk: equal, the
stage resumes or is reused as before; different, the stage's folder is moved aside to
``<stage>.stale`` (the previous stale copy is replaced) and the stage is retrained from
scratch, with a warning that names what changed. A retrained stage's output gets a new
fingerprint, so every stage that depends on it is retrained in turn.

A rerun with a changed setting is the request to retrain: no other flag is needed. A bad
setting never gets here: :func:`mtpkd_jax.comparison.runner.run` checks every setting
(:mod:`mtpkd_jax.comparison.settings`) before any stage is looked at, so a refused rerun
moves nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import logging

from mtpkd_jax.train import checkpoint, distributed

FILENAME = "provenance.json"


def split_digest(split: Mapping[str, np.ndarray]) -> str:
  """Digest of a split's example indices."""
  digest = hashlib.sha1()
  for name in sorted(split):
    digest.update(name.encode())
    digest.update(np.asarray(split[name], dtype=np.int64).tobytes())
  return digest.hexdigest()[:16]


def file_digest(path: str | Path) -> str:
  """Digest of a file's bytes (e.g. the pretrained weights a stage starts from)."""
  digest = hashlib.sha1()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()[:16]


def output_fingerprint(workdir: str | Path, stage: str, required_by: str | None = None) -> str:
  """Digest of the variables a finished stage saved (its output, as its successors load it).

  Raises:
    FileNotFoundError: if the stage has no saved output (naming ``required_by``).
  """
  variables, _ = checkpoint.load_stage_output(workdir, stage, required_by=required_by)
  digest = hashlib.sha1()
  for path, leaf in jax.tree_util.tree_leaves_with_path(variables):
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()[:16]


def _changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
  changed = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key), new.get(key)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
      changed += _changes(a, b, f"{prefix}{key}.")
    elif a != b:
      changed.append(f"{prefix}{key}")
  return changed


def ensure(workdir: str | Path, stage: str, record: Mapping[str, Any]) -> list[str]:
  """Makes ``<workdir>/<stage>`` hold a stage built from ``record``.

  Args:
    workdir: the run's directory.
    stage: the stage's name.
    record: JSON-serialisable description of what the stage is built from.

  Returns:
    What changed since the stage was last built (empty for a new or unchanged stage).
  """
  directory = checkpoint.stage_dir(workdir, stage)
  record = json.loads(json.dumps(record, sort_keys=True, default=str))
  path = directory / FILENAME
  changed = []
  if directory.exists():
    old = json.loads(path.read_text()) if path.is_file() else {}
    changed = _changes(old, record) if old else ["(no provenance record)"]
  # Every process reads the old record before process 0 moves or rewrites it.
  distributed.barrier(f"provenance_read_{stage}")
  if distributed.is_main():
    if changed:
      stale = directory.with_name(f"{directory.name}.stale")
      shutil.rmtree(stale, ignore_errors=True)
      directory.rename(stale)
      logging.warning(
        "Stage %r is stale (changed: %s): retraining it; the old one is in %s.",
        stage,
        ", ".join(changed),
        stale,
      )
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True))
  distributed.barrier(f"provenance_written_{stage}")
  return changed
