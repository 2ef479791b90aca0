"""The metric sets of a comparison (`config.metrics`): names, the selection score, bad choices."""

import numpy as np
import pytest

from mtpkd_jax.data import schema
from mtpkd_jax.methods import evaluation
from mtpkd_jax.train import metrics

SENTIMENT = schema.Task("regression", ("sentiment",))


def test_the_sentiment_set_is_mosis_metrics_and_selects_on_correlation():
  rng = np.random.default_rng(0)
  scores = rng.uniform(-3, 3, size=50)
  outputs = (scores + rng.normal(size=50))[:, None]
  values = evaluation.scores(outputs, scores[:, None], SENTIMENT, "sentiment")
  assert evaluation.metric_names(SENTIMENT, "sentiment") == (
    "acc_2",
    "f1_2",
    "mae",
    "corr",
    "acc_7",
  )
  assert values == {**metrics.sentiment(outputs, scores), "score": values["corr"]}
  assert evaluation.score_metric(SENTIMENT, "sentiment") == "corr"
  # The default set of the same task is the CCC.
  assert evaluation.metric_names(SENTIMENT) == ("ccc_sentiment", "ccc_mean")


@pytest.mark.parametrize(
  "task, metric_set, message",
  [
    (schema.Task("classification", ("neg", "pos")), "sentiment", "scores one regressed"),
    (schema.Task("regression", ("valence", "arousal")), "sentiment", "scores one regressed"),
    (SENTIMENT, "mosi", "must be one of"),
  ],
)
def test_a_metric_set_that_does_not_fit_the_task_is_refused(task, metric_set, message):
  with pytest.raises(ValueError, match=message):
    evaluation.metric_names(task, metric_set)
