"""The generator of `synthetic_affect`'s sentiment configs: utterances shaped like CMU-MOSI.

An utterance is a sequence of `n` words (`min_words <= n <= max_words`) with three
word-aligned feature sequences, zero-padded to `max_words` and sharing one mask:

* words come from a fixed vocabulary of neutral words, sentiment words (a sign and an
  intensity each) and negators, which flip the polarity of the sentiment word after them.
  An utterance's opinion sets how likely its sentiment words are positive; its score is
  `3 tanh(sum of the words' polarities / (1.5 sqrt(n)))` plus annotator noise, clipped to
  `[-3, 3]`: many utterances near 0, fewer at the extremes, as in MOSI;
* `text` (strong): the word's embedding (its identity) plus `text_strength` times its
  polarity along one direction, plus a little noise;
* `audio` (weak): the speaker's voice plus `audio_strength` times fixed loadings of the
  word's polarity and emphasis (stress, larger on sentiment words), scaled by the speaker's
  expressiveness, under AR(1) noise;
* `visual` (weaker): the speaker's face plus `visual_strength` times its own loadings of
  polarity and emphasis smoothed over the preceding words (expressions linger), under a
  per-utterance offset (pose, lighting) and per-word noise.

So the weak modalities carry each word's polarity, not only the utterance's score, which
is what a per-word translation from the strong modality can teach. The functions draw
from the generators they are given; `synthetic_affect` seeds them.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from mtpkd_jax.data import schema as schema_lib

# Vocabulary: neutral words, positive and negative sentiment words, negators.
NUM_NEUTRAL, NUM_POSITIVE, NUM_NEGATIVE, NUM_NEGATORS = 160, 30, 30, 4
SENTIMENT_RATE = 0.3  # Probability that a word slot holds a sentiment word...
NEGATION_RATE = 0.15  # ... and that such a word is negated (preceded by a negator).
AUDIO_AR = 0.7  # AR(1) coefficient of the audio noise.
VISUAL_LINGER = 0.6  # How much of the previous word's expression remains.


class SentimentParams(Protocol):
  """The generator parameters read here, as a `synthetic_affect` config holds them.

  :class:`~mtpkd_jax.data.synthetic_affect.SyntheticAffectConfig` documents each; this
  module reads them from any object that has them, and does not import that one (which
  imports this module).
  """

  min_words: int
  max_words: int
  text_features: int
  audio_features: int
  visual_features: int
  text_strength: float
  audio_strength: float
  visual_strength: float
  label_noise: float


def lexicon(rng: np.random.Generator, config: SentimentParams) -> dict[str, np.ndarray]:
  """Draws the vocabulary and the modalities' loadings, shared by all speakers.

  Args:
    rng: The generator to draw from.
    config: The generator parameters (its feature sizes are read).

  Returns:
    `embedding` `[V, text_features]`, `polarity` `[V]` (0 for neutral words and
    negators), the word ids of each kind (`neutral`, `positive`, `negative`, `negator`),
    the text polarity direction `text_axis` `[text_features]` (unit norm), and
    `audio_loadings` `[audio_features, 2]` and `visual_loadings` `[visual_features, 2]`
    on (polarity, emphasis).
  """
  counts = (NUM_NEUTRAL, NUM_POSITIVE, NUM_NEGATIVE, NUM_NEGATORS)
  starts = np.cumsum((0, *counts))
  ids = {
    kind: np.arange(starts[i], starts[i + 1])
    for i, kind in enumerate(("neutral", "positive", "negative", "negator"))
  }
  polarity = np.zeros(starts[-1])
  polarity[ids["positive"]] = rng.uniform(0.5, 1.5, NUM_POSITIVE)
  polarity[ids["negative"]] = -rng.uniform(0.5, 1.5, NUM_NEGATIVE)
  axis = rng.normal(size=config.text_features)
  return {
    "embedding": rng.normal(0.0, 1.0, (starts[-1], config.text_features)),
    "polarity": polarity,
    **ids,
    "text_axis": axis / np.linalg.norm(axis),
    "audio_loadings": _loadings(rng, config.audio_features),
    "visual_loadings": _loadings(rng, config.visual_features),
  }


def _loadings(rng: np.random.Generator, features: int) -> np.ndarray:
  """Random orthogonal directions of polarity and emphasis, `[features, 2]`.

  Each of norm `sqrt(features)` (a unit gain on every feature on average): every seed is as
  hard.
  """
  directions, _ = np.linalg.qr(rng.normal(size=(features, 2)))
  return directions * np.sqrt(features)


def speaker(rng: np.random.Generator, config: SentimentParams) -> dict[str, Any]:
  """Draws a speaker's voice, face, expressiveness and leaning."""
  return {
    "voice": rng.normal(0.0, 1.0, config.audio_features),
    "face": rng.normal(0.0, 1.0, config.visual_features),
    # How much of their sentiment shows in voice and face.
    "expressiveness": rng.uniform(0.5, 1.3),
    # Some speakers are more positive than others.
    "leaning": rng.normal(0.0, 0.3),
  }


def _words(
  rng: np.random.Generator,
  config: SentimentParams,
  lex: dict[str, np.ndarray],
  opinion: float,
) -> tuple[np.ndarray, np.ndarray]:
  """Draws an utterance's word ids and their polarities in context, `[n]` each."""
  n = int(rng.integers(config.min_words, config.max_words + 1))
  words, polarity = [], []
  while len(words) < n:
    if rng.uniform() >= SENTIMENT_RATE:
      words.append(rng.choice(lex["neutral"]))
      polarity.append(0.0)
      continue
    # The polarity in context follows the opinion; a negated word has the opposite sign.
    positive = rng.uniform() < 1.0 / (1.0 + np.exp(-2.0 * opinion))
    negated = len(words) + 1 < n and rng.uniform() < NEGATION_RATE
    word = rng.choice(lex["positive"] if positive != negated else lex["negative"])
    if negated:
      words.append(rng.choice(lex["negator"]))
      polarity.append(0.0)
    words.append(word)
    polarity.append(-lex["polarity"][word] if negated else lex["polarity"][word])
  return np.array(words), np.array(polarity)


def utterance(
  rng: np.random.Generator,
  config: SentimentParams,
  lex: dict[str, np.ndarray],
  traits: dict[str, Any],
) -> dict[str, np.ndarray]:
  """Draws one utterance.

  Args:
    rng: The generator to draw from.
    config: The generator parameters, with `task="sentiment"`.
    lex: The vocabulary, from `lexicon`.
    traits: The speaker, from `speaker`.

  Returns:
    `text`, `audio`, `visual` (float32 `[max_words, features]`, zero after the last
    word), their masks `mask_text`, `mask_audio`, `mask_visual` (the same bool
    `[max_words]` prefix), the score `sentiment` (float32 in `[-3, 3]`), `label2`
    (score >= 0) and `label7` (`round(score) + 3`), int64.
  """
  opinion = rng.normal(traits["leaning"], 1.0)
  words, polarity = _words(rng, config, lex, opinion)
  n = len(words)
  score = 3.0 * np.tanh(polarity.sum() / (1.5 * np.sqrt(n))) + rng.normal(0.0, config.label_noise)
  score = np.float32(np.clip(score, -3.0, 3.0))
  # Stress: sentiment words are spoken (and shown) with more emphasis.
  emphasis = 0.8 * np.abs(polarity) + rng.normal(0.0, 0.5, n)
  affect = np.stack([polarity, emphasis], axis=-1)

  text = (
    lex["embedding"][words]
    + config.text_strength * polarity[:, None] * lex["text_axis"]
    + rng.normal(0.0, 0.1, (n, config.text_features))
  )

  noise = rng.normal(0.0, 1.0, (n, config.audio_features))
  for i in range(1, n):
    noise[i] = AUDIO_AR * noise[i - 1] + np.sqrt(1 - AUDIO_AR**2) * noise[i]
  gain = traits["expressiveness"]
  audio = traits["voice"] + config.audio_strength * gain * affect @ lex["audio_loadings"].T + noise

  lingering = np.copy(affect)
  for i in range(1, n):
    lingering[i] = VISUAL_LINGER * lingering[i - 1] + (1 - VISUAL_LINGER) * affect[i]
  visual = (
    traits["face"]
    + config.visual_strength * gain * lingering @ lex["visual_loadings"].T
    + rng.normal(0.0, 0.5, config.visual_features)
    + rng.normal(0.0, 1.0, (n, config.visual_features))
  )

  mask = np.arange(config.max_words) < n
  sequences = {"text": text, "audio": audio, "visual": visual}
  example = {k: pad(v, config.max_words) for k, v in sequences.items()}
  example |= {schema_lib.mask_key(k): mask for k in sequences}
  return example | {
    "sentiment": score,
    "label2": np.int64(score >= 0),
    "label7": np.int64(np.round(score) + 3),
  }


def pad(sequence: np.ndarray, length: int) -> np.ndarray:
  """`sequence` `[n, d]` zero-padded at the end to float32 `[length, d]`.

  Raises:
    ValueError: If `n > length`: padding never cuts a sequence.
  """
  if len(sequence) > length:
    raise ValueError(f"A sequence of {len(sequence)} steps does not fit in {length}.")
  out = np.zeros((length, sequence.shape[1]), np.float32)
  out[: len(sequence)] = sequence
  return out
