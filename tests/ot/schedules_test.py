"""Tests of mtpkd_jax.ot.schedules: GeomLoss's epsilon list, validation."""

import numpy as np
import pytest

from mtpkd_jax.ot import schedules


def _geomloss_epsilon_list(diameter, blur, scaling, p=2):
  """NumPy transcription of ``geomloss.utils.epsilon_schedule``."""
  return (
    [diameter**p]
    + [np.exp(e) for e in np.arange(p * np.log(diameter), p * np.log(blur), p * np.log(scaling))]
    + [blur**p]
  )


@pytest.mark.parametrize("diameter", [0.002, 0.05, 0.35, 1.0, 2.7, 11.0, 40.0])
@pytest.mark.parametrize("blur,scaling", [(0.1, 0.5), (0.05, 0.8), (0.3, 0.3)])
def test_anneal_epsilons_equal_geomloss_schedule(diameter, blur, scaling):
  want = _geomloss_epsilon_list(diameter, blur, scaling)
  schedule = schedules.Anneal(blur=blur, scaling=scaling)
  d = np.float32(diameter)
  assert int(schedule.num_steps(d)) == len(want)
  got = [float(schedule.epsilon_at(np.int32(i), d)) for i in range(len(want))]
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_anneal_schedule_is_cut_to_max_iterations_only_when_truncated():
  schedule = schedules.Anneal(blur=0.01, scaling=0.95)
  d = np.float32(40.0)
  assert int(schedule.num_steps(d)) == len(_geomloss_epsilon_list(40.0, 0.01, 0.95)) == 164
  assert int(schedule.num_steps(d, truncate=True)) == schedule.max_iterations == 100
  eps = [float(schedule.epsilon_at(np.int32(i), d, truncate=True)) for i in (98, 99)]
  np.testing.assert_allclose(eps, [1600 * 0.95 ** (2 * 97), 1e-4], rtol=1e-5)
  assert float(schedule.epsilon_at(np.int32(99), d)) > 1e-4


def test_anneal_with_diameter_below_blur_starts_at_the_diameter():
  schedule = schedules.Anneal(blur=0.1, scaling=0.5)
  d = np.float32(0.04)
  assert int(schedule.num_steps(d)) == 2
  got = [float(schedule.epsilon_at(np.int32(i), d)) for i in range(2)]
  np.testing.assert_allclose(got, [0.04**2, 0.01], rtol=1e-5)


def test_anneal_with_zero_diameter_runs_two_steps_at_blur():
  schedule = schedules.Anneal(blur=0.1, scaling=0.5)
  assert int(schedule.num_steps(np.float32(0.0))) == 2
  assert float(schedule.epsilon_at(np.int32(0), np.float32(0.0))) == pytest.approx(0.01)


@pytest.mark.parametrize(
  "build,name",
  [
    (lambda: schedules.Fixed(iterations=0), "iterations"),
    (lambda: schedules.Fixed(epsilon=0.0), "epsilon"),
    (lambda: schedules.Tolerance(epsilon=-1.0), "epsilon"),
    (lambda: schedules.Tolerance(threshold=0.0), "threshold"),
    (lambda: schedules.Anneal(blur=0.0), "blur"),
    (lambda: schedules.Anneal(blur=-0.1), "blur"),
    (lambda: schedules.Anneal(scaling=1.0), "scaling"),
    (lambda: schedules.make_schedule("cosine"), "schedule"),
  ],
)
def test_bad_schedule_arguments_raise_naming_the_argument(build, name):
  with pytest.raises(ValueError, match=name):
    build()


def test_make_schedule_builds_by_name():
  assert schedules.make_schedule("fixed", iterations=5) == schedules.Fixed(iterations=5)
  assert schedules.make_schedule("anneal", blur=0.2).target_epsilon == pytest.approx(0.04)
