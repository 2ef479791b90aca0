"""Tests of the benchmarks' timing helpers."""

import statistics

import jax.numpy as jnp
import numpy as np
import pytest

from mtpkd_jax.bench import timing


def test_timed_calls_warmup_then_repeats_and_returns_the_last_output():
  calls = []
  out, times = timing.timed(lambda: calls.append(len(calls)) or len(calls), repeats=3, warmup=2)
  assert len(calls) == 5 and out == 5
  assert len(times) == 3 and all(t >= 0 for t in times)


def test_calls_are_timed_in_turn_after_their_warmups():
  calls = []
  outs, times, number = timing.timed_in_turn(
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
  assert number == {"a": 1, "b": 1}


class _Clock:
  """A ``perf_counter`` that only calls move: each advances it by its own duration."""

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now

  def call(self, name, seconds, log):
    def run():
      # The first (warm-up) call is slower, as a compiled call's first run can be.
      log.append(name)
      self.now += seconds * (3 if log.count(name) == 1 else 1)
      return name

    return run


def test_samples_are_back_to_back_calls_lasting_min_sample_s_and_give_seconds_per_call(
  monkeypatch,
):
  clock, log = _Clock(), []
  monkeypatch.setattr(timing.time, "perf_counter", clock)
  calls = {"a": clock.call("a", 0.010, log), "b": clock.call("b", 0.003, log)}
  outs, times, number = timing.timed_in_turn(calls, repeats=4, warmup=2, min_sample_s=0.02)
  # Sized from the fastest warm-up: ceil(0.02 / 0.010) and ceil(0.02 / 0.003).
  assert number == {"a": 2, "b": 7}
  assert log.count("a") == 2 + 4 * 2 and log.count("b") == 2 + 4 * 7
  # Each sample's calls run back to back: runs of 2 a's and 7 b's after the warm-ups.
  runs = "".join(log[4:]).replace("a" * 2, "A").replace("b" * 7, "B")
  assert sorted(runs) == ["A"] * 4 + ["B"] * 4
  assert times["a"] == pytest.approx([0.010] * 4) and times["b"] == pytest.approx([0.003] * 4)
  assert outs == {"a": "a", "b": "b"}
  with pytest.raises(ValueError, match="warmup"):
    timing.timed_in_turn(calls, repeats=1, warmup=0, min_sample_s=0.02)


def test_measure_fills_measurements_from_the_runners():
  runners = {
    ("fused", "fwd"): timing.Runner(lambda: (2.5, 7), lambda o: (o[0], o[1], 100.0), 0.1, 64, "k"),
    ("pot", "fwd"): timing.Runner(lambda: (3.0, 9), lambda o: (o[0], o[1], 5.0), None, 8, "t"),
  }
  config = type("Config", (), {"repeats": 3, "warmup": 1, "min_sample_s": 0.0, "exp_size": 1 << 12})
  (fused, fused_out), (pot, pot_out) = timing.measure("solver", {"n": 4}, runners, config)
  assert (fused_out, pot_out) == ((2.5, 7), (3.0, 9))
  assert (fused.impl, fused.direction, pot.impl) == ("fused", "fwd", "pot")
  assert (fused.value, fused.iterations, fused.exps) == (2.5, 7, 100.0)
  assert (pot.value, pot.iterations, pot.exps) == (3.0, 9, 5.0)
  for measurement in (fused, pot):
    assert len(measurement.times_s) == 3 and measurement.calls_per_sample == 1
    assert measurement.median_s == pytest.approx(statistics.median(measurement.times_s))
  assert (fused.compile_s, fused.memory_bytes, fused.memory_kind) == (0.1, 64, "k")
  assert fused.exp_rate > 0 and fused.bound_fraction > 0
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


def test_the_bound_pairs_each_sample_with_the_exp_probe_of_its_round(monkeypatch):
  # The probe computes 1000 exps, at 1e6 exps/s in rounds 1 and 3 and 0.5e6 in round 2 (the
  # machine slowed down); the runner's 100 exps take 2e-4, 4e-4 and 4e-4 s. Each round's
  # fraction: 0.5, 0.5, 0.25 (median 0.5). Medians alone would give 100 / (4e-4 * 1e6) = 0.25.
  clock = _Clock()
  monkeypatch.setattr(timing.time, "perf_counter", clock)
  probe_times = iter([1e-3, 1e-3, 2e-3, 1e-3])  # A warm-up, then the rounds.
  runner_times = iter([2e-4, 2e-4, 4e-4, 4e-4])

  def advance(times):
    clock.now += next(times)
    return 0.0, 1

  monkeypatch.setattr(timing, "exp_probe", lambda size: (lambda: advance(probe_times), 1000))
  # Counted as NumPy does: the report's JSON must still get plain floats (and its targets bools).
  runner = timing.Runner(
    lambda: advance(runner_times), lambda o: (*o, np.float32(100.0)), None, None, ""
  )
  config = type("Config", (), {"repeats": 3, "warmup": 1, "min_sample_s": 0.0, "exp_size": 1})
  ((measurement, _),) = timing.measure("solver", {"n": 4}, {("fused", "fwd"): runner}, config)
  assert measurement.times_s == pytest.approx([2e-4, 4e-4, 4e-4])
  assert measurement.exp_rate == pytest.approx(1e6)
  assert measurement.bound_fraction == pytest.approx(0.5)
  assert type(measurement.bound_fraction) is float and type(measurement.exps) is float
