"""`synthetic_affect`: a small, procedurally generated stand-in for BioVid and CMU-MOSI.

The real multimodal affect datasets are licensed, so the default experiments run on this
builder. Its `pain` and `va` configs mimic the structure of BioVid that matters for
privileged distillation:

* subjects with their own face (shape, skin, resting expression, pose tendencies), their
  own physiological baseline and their own responsiveness ("stoic" subjects exist);
* a latent affect state per sample: a pain level (BL1, PA1..PA4 analogue) mapped to
  valence/arousal, or valence/arousal drawn directly for the regression config;
* `video`: a face whose expression (brow lowering, eye squeeze, mouth opening, smile)
  carries the latent *weakly*, under identity, pose, lighting, blinks, unrelated facial
  movements and sensor noise, with dynamics peaking mid-clip;
* `physio`: GSR, ECG and EMG channels that carry the latent *strongly* (skin-conductance
  rise, heart-rate increase, corrugator EMG burst) on top of per-subject baselines;
* `audio`: a speech-feature-like sequence that carries valence/arousal moderately.

Its `sentiment` configs are shaped like CMU-MOSI: utterances of speakers as word-aligned,
masked `text` (strong), `audio` (weak) and `visual` (weaker) sequences of different
lengths, with a sentiment score in `[-3, 3]` and its binary and 7-class labels (see
:mod:`mtpkd_jax.data.synthetic_sentiment`).

Everything is a deterministic function of the config: each example is drawn from a
generator seeded by `(seed, subject, sample)`, so builds are reproducible and independent of
generation order. Build with the Python API (no TensorFlow needed)::

  builder = SyntheticAffect(config="pain_binary", data_dir=..., file_format="array_record")
  builder.download_and_prepare()
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from mtpkd_jax.data import schema as schema_lib
from mtpkd_jax.data import synthetic_sentiment

PHYSIO_CHANNELS = ("gsr", "ecg", "emg")
PAIN_LEVELS = {"BL1": 0.0, "PA1": 0.25, "PA2": 0.5, "PA3": 0.75, "PA4": 1.0}
VA_QUADRANTS = ("neg_low", "neg_high", "pos_low", "pos_high")
VA_TARGETS = ("valence", "arousal")
# The labels of a `sentiment` config and their classes (a config without classes regresses
# the score, `sentiment`).
SENTIMENT_CLASSES = {
  "label2": ("negative", "non_negative"),
  "label7": tuple(str(k) for k in range(-3, 4)),
}
SEQUENCES = ("text", "audio", "visual")


@dataclasses.dataclass(eq=False)
class SyntheticAffectConfig(tfds.core.BuilderConfig):
  """Generator parameters of one `synthetic_affect` config.

  Attributes:
    task: `"pain"` (classes are pain levels, valence/arousal follow from them), `"va"`
      (valence/arousal drawn uniformly; `label` is the valence/arousal quadrant) or
      `"sentiment"` (MOSI-like utterances with a score, `label2` and `label7`).
    classes: Class names. For `"pain"`, keys of `PAIN_LEVELS`; for `"va"`, `VA_QUADRANTS`;
      for `"sentiment"`, `()` (regresses the score) or a value of `SENTIMENT_CLASSES`
      (classifies `label2` or `label7`).
    num_subjects: Number of subjects (speakers).
    samples_per_subject: Samples (utterances) per subject; for `"pain"` split as evenly as
      possible over the classes and shuffled.
    num_frames: Video frames per clip.
    image_size: Height and width of the square video frames, in pixels.
    physio_rate: Physiological sampling rate, in Hz.
    physio_seconds: Length of the physiological window, in seconds.
    audio_steps: Time steps of the audio feature sequence.
    audio_features: Features per audio step (or word).
    video_strength: Gain of the latent on the facial actions (brow lowering, eye
      squeeze, mouth opening, smile; each in [0, 1] at full affect). Unrelated facial
      movement adds a per-clip offset with standard deviation 0.25 to every action.
    physio_strength: Gain of the latent on the physiological responses (at 1, a full
      response is several times the measurement noise).
    audio_strength: Gain of the latent (sentiment: of polarity and emphasis) on the audio
      features (their noise has unit variance).
    response_noise: Standard deviation of a sample's felt intensity around its stimulus
      level (pain) and of the valence/arousal noise; shared by all modalities.
    max_words: Words per utterance at most (sentiment; the sequences' length).
    min_words: Words per utterance at least (sentiment).
    text_features: Features per word of `text` (sentiment).
    visual_features: Features per word of `visual` (sentiment).
    text_strength: Gain of a word's polarity on `text`, next to its unit-variance
      embedding (sentiment).
    visual_strength: Gain of polarity and emphasis on `visual`, under unit-variance noise
      (sentiment; `audio_strength` is the audio's).
    label_noise: Standard deviation of the annotators' noise on the score (sentiment).
    seed: Seed of the whole dataset.
  """

  task: str = "pain"
  classes: tuple[str, ...] = ("BL1", "PA4")
  num_subjects: int = 24
  samples_per_subject: int = 40
  num_frames: int = 10
  image_size: int = 32
  physio_rate: int = 64
  physio_seconds: float = 5.5
  audio_steps: int = 20
  audio_features: int = 16
  video_strength: float = 0.35
  physio_strength: float = 1.0
  audio_strength: float = 0.6
  response_noise: float = 0.1
  max_words: int = 20
  min_words: int = 5
  text_features: int = 32
  visual_features: int = 16
  text_strength: float = 2.5
  visual_strength: float = 0.5
  label_noise: float = 0.3
  seed: int = 0

  @property
  def num_classes(self) -> int:
    """Number of classes of `label`."""
    return len(self.classes)

  @property
  def num_examples(self) -> int:
    """Number of examples in the `train` split."""
    return self.num_subjects * self.samples_per_subject

  @property
  def shapes(self) -> dict[str, tuple[int, ...]]:
    """Per-example shapes of the modalities.

    `video`, `physio` and `audio`, or for `"sentiment"` `text`, `audio` and `visual`.
    """
    if self.task == "sentiment":
      sizes = (self.text_features, self.audio_features, self.visual_features)
      return {name: (self.max_words, size) for name, size in zip(SEQUENCES, sizes, strict=True)}
    return {
      "video": (self.num_frames, self.image_size, self.image_size, 3),
      "physio": (round(self.physio_seconds * self.physio_rate), len(PHYSIO_CHANNELS)),
      "audio": (self.audio_steps, self.audio_features),
    }

  @property
  def schema(self) -> schema_lib.Schema:
    """The dataset's schema.

    `pain` classifies `label`, `va` regresses valence and arousal, `sentiment` regresses the
    score or classifies `label2` or `label7` (masked sequences).
    """
    if self.task == "sentiment":
      modalities = tuple(
        schema_lib.Modality(name, "sequence", shape, masked=True)
        for name, shape in self.shapes.items()
      )
    else:
      kinds = {
        "video": ("video", "uint8"),
        "physio": ("signal", "float32"),
        "audio": ("sequence", "float32"),
      }
      modalities = tuple(
        schema_lib.Modality(name, kinds[name][0], shape, kinds[name][1])
        for name, shape in self.shapes.items()
      )
    if self.task == "va" or self.target_keys == ("sentiment",):
      task = schema_lib.Task("regression", self.target_keys)
    else:
      task = schema_lib.Task("classification", self.classes)
    return schema_lib.Schema(modalities, task, has_subject=True)

  @property
  def target_keys(self) -> tuple[str, ...]:
    """The stored features that make up the canonical `y`.

    Raises:
      ValueError: for `"sentiment"` classes that are neither `()` nor a value of
        `SENTIMENT_CLASSES`.
    """
    if self.task == "sentiment":
      labels = {(): "sentiment"} | {c: k for k, c in SENTIMENT_CLASSES.items()}
      if self.classes not in labels:
        raise ValueError(
          f"A sentiment config's `classes` must be one of {list(labels)}, got {self.classes}."
        )
      return (labels[self.classes],)
    return VA_TARGETS if self.task == "va" else ("label",)

  @property
  def scalars(self) -> dict[str, type]:
    """The stored scalar features and their dtypes."""
    if self.task == "sentiment":
      labels = {"sentiment": np.float32, "label2": np.int64, "label7": np.int64}
    else:
      labels = {"label": np.int64, "valence": np.float32, "arousal": np.float32}
    return labels | {"subject": np.int64, "index": np.int64}


# What the sentiment configs share: MOSI-like speakers, audio stronger than for pain.
SENTIMENT = {"task": "sentiment", "num_subjects": 30, "audio_strength": 0.8}
CONFIGS = (
  SyntheticAffectConfig(
    name="pain_binary",
    description="No pain (BL1) vs highest pain (PA4), 24 subjects x 40 samples.",
  ),
  SyntheticAffectConfig(
    name="pain_5class",
    classes=tuple(PAIN_LEVELS),
    description="Five pain levels (BL1, PA1..PA4), 24 subjects x 40 samples.",
  ),
  SyntheticAffectConfig(
    name="va_regression",
    task="va",
    classes=VA_QUADRANTS,
    description="Continuous valence/arousal; `label` is the quadrant. 24 x 40 samples.",
  ),
  SyntheticAffectConfig(
    name="tiny",
    num_subjects=6,
    samples_per_subject=8,
    num_frames=4,
    image_size=16,
    physio_rate=32,
    audio_steps=8,
    audio_features=8,
    description="BL1 vs PA4 with 6 subjects x 8 small samples, for tests.",
  ),
  SyntheticAffectConfig(
    name="sentiment",
    classes=(),
    **SENTIMENT,
    description="MOSI-like sentiment score in [-3, 3], 30 speakers x 40 utterances.",
  ),
  SyntheticAffectConfig(
    name="sentiment_binary",
    classes=SENTIMENT_CLASSES["label2"],
    **SENTIMENT,
    description="MOSI-like negative (score < 0) vs non-negative, 30 x 40 utterances.",
  ),
  SyntheticAffectConfig(
    name="sentiment_7class",
    classes=SENTIMENT_CLASSES["label7"],
    **SENTIMENT,
    description="MOSI-like rounded score, classes -3..3, 30 x 40 utterances.",
  ),
  SyntheticAffectConfig(
    name="sentiment_tiny",
    classes=(),
    **(SENTIMENT | {"num_subjects": 6}),
    samples_per_subject=8,
    max_words=8,
    min_words=3,
    text_features=8,
    audio_features=8,
    visual_features=8,
    description="MOSI-like sentiment score, 6 speakers x 8 short utterances, for tests.",
  ),
)


class SyntheticAffect(tfds.core.GeneratorBasedBuilder):
  """Procedural multimodal affect dataset with BioVid's structure (one `train` split)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = list(CONFIGS)

  @property
  def schema(self) -> schema_lib.Schema:
    """The config's schema."""
    return self.builder_config.schema

  @property
  def target_keys(self) -> tuple[str, ...]:
    """The config's target keys."""
    return self.builder_config.target_keys

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    # Raw bytes: much faster to write than `tf.train.Example` value lists.
    arrays = {m.name: (m.shape, np.dtype(m.dtype)) for m in config.schema.modalities}
    arrays |= {
      schema_lib.mask_key(m.name): (m.shape[:1], np.dtype(bool))
      for m in config.schema.modalities
      if m.masked
    }
    features = {
      k: tfds.features.Tensor(shape=s, dtype=d, encoding=tfds.features.Encoding.BYTES)
      for k, (s, d) in arrays.items()
    }
    features |= {k: tfds.features.Tensor(shape=(), dtype=d) for k, d in config.scalars.items()}
    # DatasetInfo directly: `dataset_info_from_configs` wants a package folder with metadata.
    return tfds.core.DatasetInfo(
      builder=self,
      description=__doc__,
      features=tfds.features.FeaturesDict(features),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download.
    return {"train": self._generate_examples()}

  def _generate_examples(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    config = self.builder_config
    for subject in range(config.num_subjects):
      for example in subject_examples(config, subject):
        yield int(example["index"]), example


def subject_examples(config: SyntheticAffectConfig, subject: int) -> list[dict[str, np.ndarray]]:
  """Generates all examples of one subject.

  Args:
    config: The generator parameters.
    subject: Subject id in `[0, config.num_subjects)`.

  Returns:
    `config.samples_per_subject` examples, each a dict with `video` (uint8
    `[frames, size, size, 3]`), `physio` (float32 `[time, 3]`), `audio` (float32
    `[steps, features]`) and scalars `label`, `valence`, `arousal`, `subject`, `index`;
    for `"sentiment"`, the utterances of `synthetic_sentiment.utterance` with `subject` and
    `index`.

  Raises:
    ValueError: on an unknown `config.task`, or word counts out of order.
  """
  if config.task == "sentiment":
    return _sentiment_examples(config, subject)
  rng = np.random.default_rng(_entropy(config.seed, subject, stream=1))
  traits = _subject_traits(rng, config)
  n = config.samples_per_subject
  labels = rng.permutation(np.arange(n) % config.num_classes)
  # Shared by all subjects: how the audio features load on valence and arousal.
  audio_loadings = np.random.default_rng(_entropy(config.seed, stream=2)).normal(
    size=(config.audio_features, 2)
  )
  examples = []
  for sample, label in enumerate(labels):
    rng = np.random.default_rng(_entropy(config.seed, subject, sample, stream=3))
    label, valence, arousal = _affect(rng, config, traits, int(label))
    examples.append(
      {
        "video": _video(rng, config, traits, valence, arousal),
        "physio": _physio(rng, config, traits, valence, arousal),
        "audio": _audio(rng, config, traits, audio_loadings, valence, arousal),
        "label": np.int64(label),
        "valence": np.float32(valence),
        "arousal": np.float32(arousal),
        "subject": np.int64(subject),
        "index": np.int64(subject * n + sample),
      }
    )
  return examples


def _sentiment_examples(config: SyntheticAffectConfig, speaker: int) -> list[dict[str, np.ndarray]]:
  """Generates all utterances of one speaker (see `subject_examples`)."""
  if not 1 <= config.min_words <= config.max_words:
    raise ValueError(
      f"A sentiment config needs 1 <= `min_words` <= `max_words`, got {config.min_words} "
      f"and {config.max_words}."
    )
  # Shared by all speakers: the vocabulary and how the modalities load on sentiment.
  lexicon = synthetic_sentiment.lexicon(
    np.random.default_rng(_entropy(config.seed, stream=4)), config
  )
  traits = synthetic_sentiment.speaker(
    np.random.default_rng(_entropy(config.seed, speaker, stream=5)), config
  )
  n = config.samples_per_subject
  return [
    synthetic_sentiment.utterance(
      np.random.default_rng(_entropy(config.seed, speaker, sample, stream=6)),
      config,
      lexicon,
      traits,
    )
    | {"subject": np.int64(speaker), "index": np.int64(speaker * n + sample)}
    for sample in range(n)
  ]


def _entropy(*ids: int, stream: int) -> list[int]:
  """Seed entropy for one random stream.

  NumPy pads seed entropy with zeros, so `[0]`, `[0, 0]` and `[0, 0, 0]` seed the same
  generator; a non-zero trailing stream tag keeps the streams of different lengths apart.
  """
  return [*ids, stream]


def _subject_traits(rng: np.random.Generator, config: SyntheticAffectConfig) -> dict:
  """Draws a subject's identity, physiological baseline, voice and responsiveness."""
  tone = rng.uniform()
  return {
    # How strongly this subject reacts at all (BioVid has notoriously stoic subjects).
    "responsiveness": rng.uniform(0.5, 1.3),
    "va_bias": rng.normal(0.0, 0.2, size=2),
    # Face geometry, in face-normalised units (face half-axes are 1).
    "face_axes": (rng.uniform(0.55, 0.7), rng.uniform(0.7, 0.85)),
    "center": rng.normal(0.0, 0.06, size=2),
    "roll": rng.normal(0.0, 0.08),
    "eye_dx": rng.uniform(0.3, 0.42),
    "eye_y": rng.uniform(-0.22, -0.05),
    "eye_size": (rng.uniform(0.12, 0.17), rng.uniform(0.06, 0.1)),
    "brow_gap": rng.uniform(0.14, 0.24),
    "brow_tilt": rng.normal(0.0, 0.15),
    "brow_height": rng.uniform(0.025, 0.05),
    "mouth_y": rng.uniform(0.38, 0.55),
    "mouth_width": rng.uniform(0.18, 0.3),
    "mouth_curve": rng.normal(0.0, 0.04),
    # Colours, RGB in [0, 1].
    "background": rng.uniform(0.15, 0.85, size=3),
    "skin": np.array([0.55 + 0.35 * tone, 0.4 + 0.35 * tone, 0.3 + 0.3 * tone])
    * rng.uniform(0.9, 1.1, size=3),
    "hair": rng.uniform(0.05, 0.45) * np.ones(3),
    "lips": np.array([0.6, 0.22, 0.22]) * rng.uniform(0.7, 1.0),
    # Physiological baseline.
    "gsr_level": rng.uniform(2.0, 12.0),
    "gsr_gain": rng.uniform(0.5, 1.5),
    "heart_rate": rng.uniform(55.0, 85.0),
    "hr_gain": rng.uniform(5.0, 15.0),
    "ecg_amplitude": rng.uniform(0.6, 1.4),
    "emg_level": rng.uniform(0.5, 1.5),
    "emg_gain": rng.uniform(1.0, 3.0),
    # Voice.
    "voice": rng.normal(0.0, 1.0, size=config.audio_features),
  }


def _affect(
  rng: np.random.Generator, config: SyntheticAffectConfig, traits: dict, label: int
) -> tuple[int, float, float]:
  """Draws a sample's latent affect state.

  Returns:
    `(label, valence, arousal)` with valence and arousal in `[-1, 1]`. For `"pain"` the
    label is the given stimulus class; for `"va"` it is the quadrant of the drawn state.
  """
  noise = rng.normal(0.0, config.response_noise, size=3)
  if config.task == "pain":
    level = PAIN_LEVELS[config.classes[label]]
    felt = max(0.0, traits["responsiveness"] * level + noise[0])
    valence = 0.2 - 1.2 * felt + noise[1]
    arousal = -0.8 + 1.6 * felt + noise[2]
  elif config.task == "va":
    valence, arousal = rng.uniform(-1.0, 1.0, size=2) + traits["va_bias"] + noise[1:]
    label = 2 * int(valence >= 0) + int(arousal >= 0)
  else:
    raise ValueError(f"Unknown task {config.task!r}; expected 'pain', 'va' or 'sentiment'.")
  return label, float(np.clip(valence, -1, 1)), float(np.clip(arousal, -1, 1))


def _soft_ellipse(u, w, center, axes, pixel):
  """Anti-aliased coverage of an ellipse in face coordinates."""
  du, dw = u - center[0], w - center[1]
  radius = np.sqrt((du / axes[0]) ** 2 + (dw / axes[1]) ** 2)
  # First-order distance to the boundary, `(r - 1) / |grad r|`: also right for the thin
  # ellipses of closed eyes.
  gradient = np.sqrt((du / axes[0] ** 2) ** 2 + (dw / axes[1] ** 2) ** 2) / (radius + 1e-6)
  distance = (radius - 1.0) / (gradient + 1e-6)
  return np.clip(0.5 - distance / pixel, 0.0, 1.0)


def _video(
  rng: np.random.Generator,
  config: SyntheticAffectConfig,
  traits: dict,
  valence: float,
  arousal: float,
) -> np.ndarray:
  """Renders a face clip, uint8 `[frames, size, size, 3]`, whose expression follows affect."""
  t_count, size = config.num_frames, config.image_size
  t = np.linspace(0.0, 1.0, t_count)[:, None, None]
  # Expression builds up to a peak near the middle of the clip.
  envelope = np.exp(-0.5 * ((t - rng.normal(0.5, 0.08)) / rng.uniform(0.2, 0.35)) ** 2)
  negative, aroused, positive = max(0.0, -valence), (arousal + 1) / 2, max(0.0, valence)
  gain = config.video_strength * envelope

  def action(drive):
    # Affect-driven action plus unrelated facial movement (talking, frowning, ...).
    return gain * drive + rng.normal(0.0, 0.25) + rng.normal(0.0, 0.08, size=t.shape)

  brow_lower = action(negative)
  eye_squeeze = np.clip(action(0.6 * negative + 0.4 * aroused), -0.5, 0.9)
  mouth_open = np.clip(action(0.5 * negative + 0.5 * aroused), 0.0, None)
  smile = action(positive)
  blink = (rng.uniform(size=t.shape) < 0.08) * 0.9

  # Pose: the subject's tendency, a per-clip offset and per-frame jitter.
  center = traits["center"] + rng.normal(0.0, 0.04, size=2) + rng.normal(0.0, 0.015, (t_count, 2))
  roll = traits["roll"] + rng.normal(0.0, 0.05) + rng.normal(0.0, 0.02, size=t.shape)
  scale = rng.uniform(0.95, 1.05)
  axis = (np.arange(size) + 0.5) / size * 2.0 - 1.0
  y, x = np.meshgrid(axis, axis, indexing="ij")
  dx, dy = x - center[:, 0, None, None], y - center[:, 1, None, None]
  face_a, face_b = traits["face_axes"][0] * scale, traits["face_axes"][1] * scale
  u = (np.cos(roll) * dx + np.sin(roll) * dy) / face_a
  w = (-np.sin(roll) * dx + np.cos(roll) * dy) / face_b
  pixel = 2.0 / size / face_a  # One pixel in face units (approximately).

  face = _soft_ellipse(u, w, (0.0, 0.0), (1.0, 1.0), pixel)
  eye_w, eye_h = traits["eye_size"]
  eye_h = eye_h * np.clip(1.0 - 0.6 * eye_squeeze - blink, 0.05, None)
  brow_y = traits["eye_y"] - traits["brow_gap"] * (1.0 - 0.5 * brow_lower)
  eyes, brows = np.zeros_like(u), np.zeros_like(u)
  for side in (-1.0, 1.0):
    eye_x = side * traits["eye_dx"]
    eyes = np.maximum(eyes, _soft_ellipse(u, w, (eye_x, traits["eye_y"]), (eye_w, eye_h), pixel))
    # Lowered brows also draw together and slant down towards the nose.
    brow_x = eye_x * (1.0 - 0.1 * brow_lower)
    slant = side * (traits["brow_tilt"] + 0.4 * brow_lower) * (u - brow_x)
    brow = _soft_ellipse(
      u, w - slant, (brow_x, brow_y), (1.3 * eye_w, traits["brow_height"]), pixel
    )
    brows = np.maximum(brows, brow)
  mouth_w = traits["mouth_width"] * (1.0 + 0.2 * smile)
  mouth_line = traits["mouth_y"] + (traits["mouth_curve"] - 0.1 * smile) * (u / mouth_w) ** 2
  mouth_h = 0.025 + 0.12 * mouth_open
  mouth_distance = np.maximum(np.abs(u) - mouth_w, np.abs(w - mouth_line) - mouth_h)
  mouth = np.clip(0.5 - mouth_distance / pixel, 0.0, 1.0)

  # Paint background, face, eyes, brows, mouth in that order: each layer's weight is its
  # coverage times what the layers above leave visible.
  masks = [np.ones_like(face), face, eyes * face, brows * face, mouth * face]
  colours = [
    traits["background"],
    traits["skin"],
    (0.1, 0.1, 0.15),
    traits["hair"],
    traits["lips"],
  ]
  visible, weights = np.ones_like(face), []
  for mask in reversed(masks):
    weights.append(mask * visible)
    visible = visible * (1.0 - mask)
  image = np.stack(weights[::-1], axis=-1) @ np.array(colours)
  # Lighting: clip-level gain and direction, per-frame flicker; then sensor noise.
  gradient = rng.normal(0.0, 0.25, size=2)
  light = rng.uniform(0.7, 1.2) * (1.0 + gradient[0] * x + gradient[1] * y)
  light = light * (1.0 + rng.normal(0.0, 0.02, size=t.shape))
  image = image * light[..., None] + rng.normal(0.0, 0.03, size=image.shape)
  return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _physio(
  rng: np.random.Generator,
  config: SyntheticAffectConfig,
  traits: dict,
  valence: float,
  arousal: float,
) -> np.ndarray:
  """Draws GSR, ECG and EMG, float32 `[time, 3]`, responding to affect after a latency."""
  t = np.arange(config.shapes["physio"][0]) / config.physio_rate
  strength = config.physio_strength
  aroused, negative = (arousal + 1) / 2, max(0.0, -valence)

  # GSR (uS): tonic level and drift, a phasic rise ~2 s after stimulus onset, and sometimes
  # a spontaneous response unrelated to the stimulus.
  rise = 1.0 / (1.0 + np.exp(-(t - rng.uniform(1.5, 2.5)) / 0.4))
  spontaneous = rng.uniform() < 0.3
  bump = spontaneous * rng.uniform(0.0, 0.5) / (1.0 + np.exp(-(t - rng.uniform(0.0, 5.5)) / 0.3))
  gsr = (
    traits["gsr_level"]
    + rng.normal(0.0, 0.5)
    + rng.normal(0.0, 0.05) * t
    + traits["gsr_gain"] * (strength * aroused * rise + bump)
    + rng.normal(0.0, 0.02, size=t.shape)
  )

  # ECG (mV): beats at a heart rate that rises with arousal, with sinus arrhythmia.
  response = np.exp(-0.5 * ((t - rng.uniform(3.0, 4.0)) / 1.0) ** 2)
  heart_rate = (
    traits["heart_rate"]
    + rng.normal(0.0, 3.0)
    + strength * traits["hr_gain"] * aroused * response
    + 3.0 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 2 * np.pi))
  )
  phase = np.cumsum(heart_rate / 60.0) / config.physio_rate + rng.uniform()
  offset = phase - np.round(phase)
  beat = np.exp(-0.5 * (offset / 0.04) ** 2) + 0.3 * np.exp(-0.5 * ((offset - 0.3) / 0.08) ** 2)
  ecg = (
    traits["ecg_amplitude"] * beat
    + 0.1 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
    + rng.normal(0.0, 0.05, size=t.shape)
  )

  # EMG (corrugator, band-limited noise envelope): bursts while the face is in pain.
  burst = 1.0 / (1.0 + np.exp(-(t - 2.0) / 0.3)) / (1.0 + np.exp((t - 5.0) / 0.3))
  amplitude = traits["emg_level"] * rng.uniform(0.8, 1.2) + (
    strength * traits["emg_gain"] * negative * burst
  )
  emg = amplitude * rng.normal(0.0, 1.0, size=t.shape)
  return np.stack([gsr, ecg, emg], axis=-1).astype(np.float32)


def _audio(
  rng: np.random.Generator,
  config: SyntheticAffectConfig,
  traits: dict,
  loadings: np.ndarray,
  valence: float,
  arousal: float,
) -> np.ndarray:
  """Draws speech-like features, float32 `[steps, features]`: voice + affect + AR(1) noise."""
  steps = config.audio_steps
  envelope = np.sin(np.pi * (np.arange(steps) + 0.5) / steps)[:, None]
  noise = rng.normal(0.0, 1.0, size=(steps, config.audio_features))
  for i in range(1, steps):
    noise[i] = 0.7 * noise[i - 1] + np.sqrt(1 - 0.7**2) * noise[i]
  affect = loadings @ np.array([valence, arousal])
  features = traits["voice"] + config.audio_strength * envelope * affect + noise
  return features.astype(np.float32)
