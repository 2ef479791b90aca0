"""Trains and compares MT-PKDOT, PKDOT and the baselines; prints the results table.

  python -m experiments.train                      # the default comparison (README)
  python -m experiments.train --config experiments/configs/synthetic_mtpkdot.py:pain_5class \\
      --workdir results/pain5
  python -m experiments.train --config.label_budgets='(5, 10, 30, 0)' --workdir results/budgets

Rerunning with the same ``--workdir`` resumes every stage from its last checkpoint.

On several processes (hosts), start the same command in every process; under SLURM or on a
TPU pod slice JAX finds the processes itself, elsewhere pass them (README, "Scaling out"):

  python -m experiments.train --coordinator_address=host0:1234 --num_processes=2 \
      --process_id=0 ...
"""

import importlib.util
import logging as std_logging
import sys
from pathlib import Path

import jax
from absl import app, flags, logging
from ml_collections import config_flags

import mtpkd_jax
from mtpkd_jax.comparison import budgets, report, runner, settings
from mtpkd_jax.train import distributed

_DEFAULT_CONFIG = str(Path(__file__).parent / "configs" / "synthetic_mtpkdot.py")


def _load_config(argv: list[str]):
  """The config ``--config`` names in ``argv`` (``file[:arg]``), as the flag loads it."""
  spec = _DEFAULT_CONFIG
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      spec = arg.removeprefix("--config=")
    elif arg == "--config" and i + 1 < len(argv):
      spec = argv[i + 1]
  path, _, config_arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(config_arg) if config_arg else module.get_config()


def _exit_on_unknown_field(argv: list[str]) -> None:
  """Exits 1, naming the flag, if a ``--config.<path>`` of ``argv`` names no config field.

  ml_collections stops on ``--config.epochs=3`` (no such field) with ``AttributeError:
  "'epochs'"``; this says which flag, the fields there and the closest names instead.
  """
  config = _load_config(argv)
  paths = [a.removeprefix("--config.").split("=")[0] for a in argv if a.startswith("--config.")]
  if messages := [m for p in paths if (m := settings.unknown_field(config, p))]:
    sys.stderr.write(f"FATAL Flags parsing error: {messages[0]}\n")
    sys.exit(1)


try:  # Without `--config=`, the default config is loaded, with the overrides, right here.
  _CONFIG = config_flags.DEFINE_config_file(
    "config",
    _DEFAULT_CONFIG,
    "Experiment config file, optionally with ':<arg>'.",
    lock_config=True,
  )
except (AttributeError, KeyError):
  _exit_on_unknown_field(sys.argv)
  raise
_WORKDIR = flags.DEFINE_string(
  "workdir",
  "results/synthetic_mtpkdot",
  "Checkpoints, logs, tables and plots; rerun with the same workdir to resume.",
)

_COORDINATOR = flags.DEFINE_string(
  "coordinator_address",
  None,
  "host:port of process 0 for jax.distributed; unset: auto-detected (SLURM, TPU pods) or "
  "a single process.",
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "Processes of a multi-process run (jax.distributed)."
)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, from 0.")
_HEARTBEAT = flags.DEFINE_integer(
  "heartbeat_timeout_s",
  100,
  "A process silent this long is declared dead and the others stop with an error.",
)


_PACKAGE = Path(mtpkd_jax.__file__).parent


def _package_warnings_and_all_errors(record: std_logging.LogRecord) -> bool:
  """Whether the app shows `record`: every error, and the package's own warnings.

  Orbax logs every save and restore (some as warnings); progress bars and the table are what
  matter here, with what the package warns about (a stale stage retrained and what changed,
  a dataset built with losses).
  """
  return record.levelno >= std_logging.ERROR or Path(record.pathname).is_relative_to(_PACKAGE)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with an override of no config field named in words."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError):
    _exit_on_unknown_field(argv)
    raise


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  distributed.initialize(
    _COORDINATOR.value,
    _NUM_PROCESSES.value,
    _PROCESS_ID.value,
    heartbeat_timeout_s=_HEARTBEAT.value,
  )
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
    logging.get_absl_handler().addFilter(_package_warnings_and_all_errors)
  # Runs and stages compile the same shapes again: keep compiled programs on disk (in the
  # workdir, unless JAX_COMPILATION_CACHE_DIR names a cache already).
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", str(Path(_WORKDIR.value) / "jax_cache"))
  if _CONFIG.value.get("label_budgets"):
    sweep = budgets.run(_CONFIG.value, _WORKDIR.value)
    if distributed.is_main():
      print(budgets.markdown_table(sweep))
      print(f"\nTables and plot: {', '.join(sweep['files'].values())}")
    return
  results = runner.run(_CONFIG.value, _WORKDIR.value)
  if not distributed.is_main():
    return
  print(report.markdown_table(results))
  print(
    f"\nWall time {results['wall_time_s']:.0f} s on {results['devices']}. "
    f"Tables and plots: {', '.join(results['files'].values())}, "
    f"{', '.join(results.get('plots', {}).values())}"
  )


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
