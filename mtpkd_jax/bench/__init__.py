"""Benchmarks: harnesses and reports that the ``experiments/bench_*`` apps run.

An app passes its harness the experiment config it needs (the harnesses import nothing of
``experiments/``); ``docs/design.md`` says why they live in the package.

* :mod:`~mtpkd_jax.bench.timing`: AOT compile, timed calls, memory, the machine's exp rate.
* :mod:`~mtpkd_jax.bench.pot`: POT's log-domain Sinkhorn, the reference shared with the tests.
* :mod:`~mtpkd_jax.bench.ot_inputs`: embeddings, anchored clouds and costs of the OT benchmark.
* :mod:`~mtpkd_jax.bench.ot_loss_runners`: the loss end to end and its solve alone, per
  implementation, and the gradient's agreement with GeomLoss.
* :mod:`~mtpkd_jax.bench.ot_solver_runners`: the solver alone, and compiled memory.
* :mod:`~mtpkd_jax.bench.ot_report`: the run, table, plot, figures and targets.
* :mod:`~mtpkd_jax.bench.processes`: a call in a fresh process, and peak memory (of a
  process and its children too).
* :mod:`~mtpkd_jax.bench.streaming`: streamed vs in-memory training data.
* :mod:`~mtpkd_jax.bench.build_memory`: a dataset builder's peak memory at two sizes.
* :mod:`~mtpkd_jax.bench.build_speed`: a BioVid build's speed on one core and on every core.
* :mod:`~mtpkd_jax.bench.input_speed`: the training input's clips per second, alone and
  feeding stage 0.
* :mod:`~mtpkd_jax.bench.train_step`: weak scaling of the student and backbone train steps.
"""
