"""A method's loss: its named terms weighed by the config entries its method names."""

import ml_collections
import numpy as np
import pytest

from mtpkd_jax.methods import objective


def test_total_weighs_every_named_term_by_its_config_entry():
  cfg = ml_collections.ConfigDict({"alpha": 0.8, "beta": 0.2, "gamma": 0.0})
  terms = {"task": 0.5, "ot": 2.0, "centroid": 3.0, "sinkhorn_iterations": 7}
  weights = {"task": "alpha", "ot": "beta", "centroid": "gamma"}
  np.testing.assert_allclose(objective.total(terms, weights, cfg), 0.8 * 0.5 + 0.2 * 2.0)
  np.testing.assert_allclose(objective.total(terms, {"centroid": "alpha"}, cfg), 0.8 * 3.0)


@pytest.mark.parametrize(
  "terms,weights",
  [({"task": 1.0}, {"task": "alpha", "kd": "beta"}), ({"rate": 1.0}, {"rate": "alpha"})],
)
def test_a_weighted_term_that_is_missing_or_unknown_raises_naming_it(terms, weights):
  cfg = ml_collections.ConfigDict({"alpha": 1.0, "beta": 1.0})
  missing = next(name for name in weights if name not in terms or name not in objective.TERMS)
  with pytest.raises(ValueError, match=f"Loss term '{missing}'"):
    objective.total(terms, weights, cfg)
