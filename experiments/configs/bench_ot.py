r"""Sizes and repetitions of the OT throughput benchmark (``experiments/bench_ot.py``).

  python -m experiments.bench_ot                                          # < 5 min, 2 CPUs
  python -m experiments.bench_ot --config experiments/configs/bench_ot.py:full
  python -m experiments.bench_ot --config experiments/configs/bench_ot.py:smoke \
      --output_dir /tmp/bench_ot                                  # about a minute, for tests

Default: ``B in {64, 128, 256}``, ``n in {32, 128, 512}``, ``P in {1, 4}``, memory at
``B = 512``; ``full`` adds ``B = 512`` and ``P = 12``. Any field can be overridden with
``--config.<field>=...`` (``--config.torch_threads=0`` keeps torch's default).
"""

from ml_collections import config_dict

MODES = ("default", "full", "smoke")


def get_config(arg: str | None = None):
  """The benchmark config; ``arg`` is ``None`` (default), ``full`` or ``smoke``."""
  mode = arg or "default"
  if mode not in MODES:
    raise ValueError(f"Config argument must be one of {MODES} or empty, got {arg!r}.")
  c = config_dict.ConfigDict()
  c.mode = mode
  # The loss (end to end) and its solve alone: T teachers, B embeddings of d features, k
  # anchors, GeomLoss's blur and scaling (blur² is the other solvers' epsilon).
  c.batch_sizes = (64, 128, 256, 512) if mode == "full" else (64, 128, 256)
  c.num_teachers = 3
  c.k = 30
  c.dim = 512
  c.blur = 0.1
  c.scaling = 0.5
  # The solver alone: n points, P problems, fixed iterations at an absolute epsilon.
  c.solver_sizes = (32, 128, 512)
  c.solver_problems = (1, 4, 12) if mode == "full" else (1, 4)
  c.solver_iterations = 100
  c.solver_epsilon = 0.1
  # The hard tolerance case: two separated clouds.
  c.hard_size = 128
  c.hard_problems = 4
  c.hard_epsilon = 0.05
  c.hard_threshold = 1e-3
  c.hard_max_iterations = 5000
  # Envelope vs unrolled compiled memory at memory_batch, for these loop lengths.
  c.memory_batch = 512
  c.memory_iterations = (16, 32)
  # Timed samples (the median is reported), untimed calls before, exps of the exp-rate probe.
  # A sample is as many back-to-back calls as last min_sample_s: a single call of 1 ms after
  # other work or a pause paid the machine's wake-up (measured on a 2-core VM: n = 32,
  # P = 1, 0.6 ms back to back, 1.5 ms after 30 ms of sleep, for fused and ott-jax alike).
  c.repeats = 9
  c.warmup = 2
  c.min_sample_s = 0.05
  c.exp_size = 1 << 24
  # torch CPU threads for GeomLoss (0: torch's default). 1: on a small shared machine torch's
  # OpenMP regions stall whenever one of their threads is descheduled (GeomLoss calls of 10 ms
  # took 0.1-3 s with 2 threads on a loaded 2-core machine, steadily 10 ms with 1).
  c.torch_threads = 1
  if mode == "smoke":
    c.batch_sizes = (16,)
    c.k = 4
    c.dim = 8
    c.solver_sizes = (8,)
    c.solver_problems = (2,)
    c.solver_iterations = 10
    c.hard_size = 16
    c.hard_problems = 2
    c.hard_epsilon = 0.1
    c.memory_batch = 16
    c.memory_iterations = (4, 8)
    c.repeats = 2
    c.warmup = 1
    c.min_sample_s = 0.002
    c.exp_size = 1 << 16
  return c
