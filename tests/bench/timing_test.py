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


def test_calls_are_timed_in_turn_after_their_warmups():
  calls = []
  outs, times = timing.timed_in_turn(
    {"a": lambda: calls.append("a") or len(calls), "b": lambda: calls.append("b") or len(calls)},
    repeats=3,
    warmup=1,
  )
  # The warm-ups, then three rounds of one call each (in a shuffled order).
  assert "".join(calls[:2]) == "ab"
  assert all(sorted(calls[i : i + 2]) == ["a", "b"] for i in (2, 4, 6))
  assert calls[2:] != ["a", "b"] * 3 and calls[2:] != ["b", "a"] * 3
  assert sorted(outs.values()) == [7, 8]
  assert [len(t) for t in times.values()] == [3, 3]


def test_measure_fills_measurements_from_the_runners():
  runners = {
    ("fused", "fwd"): timing.Runner(lambda: (2.5, 7), lambda o: (o[0], o[1], 100.0), 0.1, 64, "k"),
    ("pot", "fwd"): timing.Runner(lambda: (3.0, 9), lambda o: (o[0], o[1], 5.0), None, 8, "t"),
  }
  config = type("Config", (), {"repeats": 3, "warmup": 1})
  (fused, fused_out), (pot, pot_out) = timing.measure("solver", {"n": 4}, runners, config)
  assert (fused_out, pot_out) == ((2.5, 7), (3.0, 9))
  assert (fused.impl, fused.direction, pot.impl) == ("fused", "fwd", "pot")
  assert (fused.value, fused.iterations, fused.exps) == (2.5, 7, 100.0)
  assert (pot.value, pot.iterations, pot.exps) == (3.0, 9, 5.0)
  for measurement in (fused, pot):
    assert len(measurement.times_s) == 3
    assert measurement.median_s == pytest.approx(statistics.median(measurement.times_s))
  assert (fused.compile_s, fused.memory_bytes, fused.memory_kind) == (0.1, 64, "k")
  assert (pot.compile_s, pot.memory_bytes, pot.memory_kind) == (None, 8, "t")


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
