"""MT-PKDOT, PKDOT and their baselines on the embedded ``synthetic_affect`` dataset.

The README's main job (the default comparison on ``pain_binary``, 3 runs):

  python -m experiments.train

Other variants and overrides (``arg`` is ``<config>[,smoke]``, config one of
``pain_binary | pain_5class | va_regression``):

  python -m experiments.train \\
      --config experiments/configs/synthetic_mtpkdot.py:pain_5class --workdir results/pain5
  python -m experiments.train --config experiments/configs/synthetic_mtpkdot.py:va_regression \\
      --config.methods="('joint_teacher','visual_only','pkdot','mt_pkdot')"
  python -m experiments.train --config experiments/configs/synthetic_mtpkdot.py:pain_binary,smoke \\
      --workdir /tmp/smoke

``smoke`` shrinks everything (the ``tiny`` dataset, one run, two epochs) to seconds.
"""

import ml_collections
from ml_collections import config_dict

VARIANTS = ("pain_binary", "pain_5class", "va_regression")


def _ot_params(alpha: float, beta: float, gamma: float, k: int) -> dict:
  return {
    "alpha": alpha,
    "beta": beta,
    "gamma": gamma,
    "anchors": "least",
    "k": k,
    "backend": "fused",
    "schedule": {"name": "anneal", "params": {"blur": 0.1, "scaling": 0.5}},
    "routing": "min_loss",
    "tau": 1.0,
  }


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment config; ``arg`` is ``<variant>[,smoke]``."""
  variant, *options = (arg or "pain_binary").split(",")
  if variant not in VARIANTS or set(options) - {"smoke"}:
    raise ValueError(
      f"Config argument must be one of {VARIANTS}, optionally ',smoke'; got {arg!r}."
    )
  smoke = "smoke" in options
  c = ml_collections.ConfigDict()
  c.dataset = "synthetic_affect/" + ("tiny" if smoke else variant)
  c.data_dir = config_dict.placeholder(str)  # None: TFDS's default (~/tensorflow_datasets).
  c.visual = "video"
  c.privileged = ("physio", "audio") if variant == "va_regression" else ("physio",)
  c.methods = ("joint_teacher", "visual_only", "pkd", "pkdot", "mt_pkdot")
  c.baseline = "visual_only"

  # Runs: run r uses fold r mod num_folds (subject-independent) and seed `seed + r`.
  c.num_runs = 1 if smoke else 3
  c.num_folds = 3
  c.val_subjects = 1 if smoke else 3
  c.seed = 0
  c.split_seed = 0
  c.num_devices = config_dict.placeholder(int)  # None: every local device.

  c.embed_dim = 16 if smoke else 64
  c.compute_dtype = "float32"  # or "bfloat16" (encoders; parameters stay float32)
  c.dropout_rate = 0.1
  c.encoders = {
    "video": {
      "name": "frame_transformer",
      "kwargs": {
        "widths": (8, 16) if smoke else (16, 32),
        "center": True,
        "num_layers": 1,
        "num_heads": 2,
        "dropout_rate": 0.1,
      },
    },
    "physio": {"name": "conv1d", "kwargs": {"widths": (8, 16) if smoke else (16, 32, 64)}},
    "audio": {"name": "audio_transformer", "kwargs": {"num_layers": 1, "num_heads": 2}},
  }

  def epochs(full: int) -> int:
    return 2 if smoke else full

  batch = 8 if smoke else 32
  c.stages = {
    "unimodal": {"epochs": epochs(30), "batch_size": batch, "learning_rate": 1e-3},
    "joint": {
      "epochs": epochs(15),
      "batch_size": batch,
      "learning_rate": 1e-3,
      "tnet_hidden": (64,),
      "tnet_loss": "mse",
      "tnet_weight": 1.0,
      # Train the stage-0 backbones with the fusion (METHOD.md: "configurable: fine-tune").
      "finetune_backbones": False,
      "backbone_learning_rate": 1e-4,
    },
    "alignment": {
      "epochs": epochs(10),
      "batch_size": batch,
      "learning_rate": 5e-3,
      "fusion_learning_rate": 1e-4,
    },
    "student": {
      "epochs": epochs(15),
      "batch_size": 8 if smoke else 64,
      "learning_rate": 5e-4,
      # Train the visual backbone with each student, from the teachers' visual backbone.
      "finetune_visual": False,
      "backbone_learning_rate": 1e-4,
    },
  }
  k = 4 if smoke else 30
  c.method_params = {
    "pkd": {"alpha": 0.8, "beta": 0.2},
    "logit_kd": {"alpha": 0.8, "beta": 0.2, "temperature": 4.0},
    "spkd": {"alpha": 0.8, "beta": 0.2},
    "rkd": {"alpha": 0.8, "beta": 0.2},
    "pkdot": _ot_params(alpha=1.0, beta=0.6, gamma=0.0, k=k),
    "mt_pkdot": _ot_params(alpha=0.8, beta=0.2, gamma=0.2, k=k),
  }

  c.checkpoint_every = 20 if smoke else 100
  c.keep_checkpoints = 2
  c.eval_batch_size = 16 if smoke else 128
  c.plot_batch_size = 16 if smoke else 64
  return c
