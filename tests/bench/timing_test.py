"""Tests of the benchmarks' timing helpers."""

import statistics

import jax.numpy as jnp
import pytest

from mtpkd_jax.bench import timing


def test_timed_calls_warmup_then_repeats_and_returns_the_last_output():
  calls = []
  out, times = timing.timed(lambda: calls.append(len(calls)) or len(calls), repeats=3, warmup=2)
  assert len(calls) == 5 and out == 5
  assert len(times) == 3 and all(t >= 0 for t in times)


def test_measure_fills_a_measurement_from_the_runner():
  runner = timing.Runner(lambda: (2.5, 7), lambda out: (out[0], out[1], 100.0), 0.1, 64, "kind")
  config = type("Config", (), {"repeats": 3, "warmup": 1})
  measurement, out = timing.measure("solver", {"n": 4}, "fused", "fwd", runner, config)
  assert out == (2.5, 7)
  assert (measurement.value, measurement.iterations, measurement.exps) == (2.5, 7, 100.0)
  assert measurement.median_s == pytest.approx(statistics.median(measurement.times_s))
  assert (measurement.compile_s, measurement.memory_bytes, measurement.memory_kind) == (
    0.1,
    64,
    "kind",
  )


def test_compile_aot_reports_at_least_the_output_bytes():
  compiled, seconds, memory = timing.compile_aot(lambda x: x * 2, jnp.ones((256, 256)))
  assert seconds > 0
  assert memory is None or memory >= 256 * 256 * 4
  assert float(compiled(jnp.ones((256, 256)))[0, 0]) == 2.0


def test_exp_rate_is_positive_and_optional_imports_answer_none():
  rates = timing.measure_exp_rate(1 << 12, repeats=2)
  assert rates["compute"] > 0 and rates["memory"] > 0
  assert timing.optional("no_such_module_mtpkd") is None
  assert timing.versions({"missing": "no_such_module_mtpkd"}) == {"missing": None}
