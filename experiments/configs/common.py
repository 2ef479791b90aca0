"""What every experiment config shares: runs, model widths, stages and method parameters.

A dataset's config (``synthetic_mtpkdot.py``, ``features.py``) starts from :func:`base` and
sets its dataset, modalities and encoders.
"""

import ml_collections
from ml_collections import config_dict


def _structural_ot(k: int) -> dict:
  return {
    "anchors": "least",
    "k": k,
    "backend": "fused",
    "schedule": {"name": "anneal", "params": {"blur": 0.1, "scaling": 0.5}},
  }


def base(smoke: bool, val_subjects: float | None = None) -> ml_collections.ConfigDict:
  """The shared fields; ``smoke`` shrinks them to a short run (minutes, mostly compilation).

  Args:
    smoke: shrink everything to a short run (minutes, mostly compilation).
    val_subjects: validation subjects per fold, a count or a fraction (the type is fixed
      here: a locked config keeps it); ``None`` for 3 (1 with ``smoke``).
  """
  c = ml_collections.ConfigDict()
  c.data_dir = config_dict.placeholder(str)  # None: TFDS's default (~/tensorflow_datasets).
  # Read every example into memory (True), stream it from disk (False), or decide by size.
  c.in_memory = config_dict.placeholder(bool)
  # Processes a build of a licensed dataset (on first use) decodes its units in; None: a core
  # each. The dataset is the same whatever the number (experiments.build_dataset --num_workers).
  c.build_workers = config_dict.placeholder(int)
  c.methods = ("joint_teacher", "visual_only", "pkd", "pkdot", "mt_pkdot")
  c.baseline = "visual_only"
  # CMKT's strong modality, one of `privileged`; None: the first privileged one. Its weak
  # modality is the test-time one, `visual`.
  c.strong = config_dict.placeholder(str)

  # Runs: run r uses fold r mod num_folds (subject-independent) and seed `seed + r`.
  c.num_runs = 1 if smoke else 5
  c.num_folds = 3
  c.val_subjects = (1 if smoke else 3) if val_subjects is None else val_subjects
  c.seed = 0
  c.split_seed = 0
  c.num_devices = config_dict.placeholder(int)  # None: every local device.
  # Labelled training examples kept of each class (of each subject, for a regression) in
  # every run's training split, drawn by the run's seed; 0: all. `label_budgets` trains one
  # comparison per budget (`budget_<b>/` in the workdir) and tabulates them side by side.
  c.label_budget = 0
  c.label_budgets = ()
  # The no-distillation control the budget table's differences are taken against (when it
  # is one of `methods`; else `baseline`).
  c.control = config_dict.placeholder(str)
  # Methods tuned on validation: a method of `methods` -> its candidates, variants of the same
  # base method by name (`{"pkd": ("pkd", "pkd:beta=1.0")}`). Every candidate trains; each
  # run reports the one with the best validation score as the method's row
  # (mtpkd_jax/comparison/tuning.py). Empty: every method at its one setting.
  c.tune = {}
  # The reported metrics: "default" (accuracy and macro-F1, or CCC per target) or "sentiment"
  # (CMU-MOSI's Acc-2, F1, MAE, correlation and Acc-7 of one regressed score in [-3, 3]).
  c.metrics = "default"

  c.embed_dim = 16 if smoke else 64
  c.compute_dtype = "float32"  # or "bfloat16" (encoders; parameters stay float32)
  c.dropout_rate = 0.1
  # Encoders by modality name; a modality without an entry gets its kind's default.
  c.encoders = {}
  c.encoders_by_kind = {}

  def epochs(full: int) -> int:
    return 2 if smoke else full

  # The fewest steps of each stage, whatever the size of the data: a training split of 100
  # examples gives the main job's stages 3 steps an epoch (1 for the students), too few for
  # the epochs that suit thousands (docs/results/schedules.md). The main job's own splits
  # take more steps than these in their epochs.
  def min_steps(full: int) -> int:
    return 0 if smoke else full

  batch = 8 if smoke else 32
  c.stages = {
    "unimodal": {
      "epochs": epochs(12),
      "min_steps": min_steps(120),
      "batch_size": batch,
      "learning_rate": 1e-3,
    },
    "joint": {
      "epochs": epochs(15),
      "min_steps": min_steps(150),
      "batch_size": batch,
      "learning_rate": 1e-3,
      "tnet_hidden": (64,),
      "tnet_loss": "mse",
      "tnet_weight": 1.0,
      # Per example, the chance that the fusion trains with one modality's tokens zeroed.
      "modality_dropout": 0.0,
      # Train the stage-0 backbones with the fusion (METHOD.md: "configurable: fine-tune").
      "finetune_backbones": False,
      "backbone_learning_rate": 1e-4,
    },
    "alignment": {
      "epochs": epochs(10),
      "min_steps": min_steps(90),
      "batch_size": batch,
      "learning_rate": 5e-3,
      "fusion_learning_rate": 1e-4,
    },
    "student": {
      "epochs": epochs(15),
      "min_steps": min_steps(100),
      "batch_size": 8 if smoke else 64,
      "learning_rate": 5e-4,
      # The release's fusion over the visual tokens and the T-Nets, or "visual": the
      # visual-only network itself, so that a student differs from it by its distillation.
      "network": "fusion",
      # Train the visual backbone with each student, from the teachers' visual backbone.
      "finetune_visual": False,
      "backbone_learning_rate": 1e-4,
      # Log each weighted loss term's gradient norm every step (a backward pass a term).
      "term_grad_norms": False,
    },
    # CMKT's stage 2 (its stage 1 is the strong modality's `unimodal` stage).
    "cmkt": {
      "epochs": epochs(12),
      "min_steps": min_steps(120),
      "batch_size": batch,
      "learning_rate": 1e-3,
      # The strong model's head `C`, when `method_params.cmkt.head` is "finetune".
      "head_learning_rate": 1e-4,
    },
  }
  k = 4 if smoke else 30
  # Every student's: whether its distillation terms also see the training examples a label
  # budget leaves unlabelled, and a factor on the student stage's learning rates
  # (mtpkd_jax/methods/params.py, `Student`).
  student = {"unlabelled": False, "lr_scale": 1.0}
  c.method_params = {
    "pkd": {**student, "alpha": 0.8, "beta": 0.2},
    "logit_kd": {**student, "alpha": 0.8, "beta": 0.2, "temperature": 4.0},
    "spkd": {**student, "alpha": 0.8, "beta": 0.2},
    "rkd": {**student, "alpha": 0.8, "beta": 0.2},
    # PKDOT distils the joint teacher alone: it has no routing (METHOD.md).
    "pkdot": {**student, "alpha": 1.0, "beta": 0.6, "gamma": 0.0, **_structural_ot(k)},
    "mt_pkdot": {
      **student,
      "alpha": 0.8,
      "beta": 0.2,
      "gamma": 0.2,
      **_structural_ot(k),
      # The teacher each batch distils: "min_loss", "joint", "mean" or "softmin" (at `tau`).
      "routing": "min_loss",
      "tau": 1.0,
    },
    # Every CMKT method (`cmkt_translation`, `cmkt_alignment`, `cmkt`, `cmkt_ot`) reads these;
    # each weighs the terms it names (mtpkd_jax/methods/registry.py).
    "cmkt": {
      "task_weight": 1.0,
      "lambda_tr": 1.0,
      "lambda_al": 0.1,
      "lambda_ot": 0.1,
      "translation_loss": "l1",  # or "mse"
      "alignment": "dcca",  # or "cosine", "mse"
      "ridge": 1e-3,  # deep CCA's ridge on each covariance
      # Deep CCA's width: pool(z_w) through a learned linear map, the strong embeddings on
      # their top principal directions (a batch correlates by chance with B - 1 directions).
      "align_dim": 4 if smoke else 8,
      "head": "frozen",  # the strong model's head: "frozen", "finetune", or "new"
      "decoder": {"kind": "mlp", "num_layers": 1},  # models.SequenceDecoder
      # The structural OT term of `cmkt_ot`, as MT-PKDOT's.
      **_structural_ot(k),
    },
  }

  c.checkpoint_every = 20 if smoke else 100
  c.keep_checkpoints = 2
  c.eval_batch_size = 16 if smoke else 128
  # Test metrics over the examples ("clip"), or, for clips of annotated frames, over every
  # annotated frame once ("frame": Aff-Wild2's convention; `evaluation.frame_scores`).
  c.scoring = "clip"
  c.plot_batch_size = 16 if smoke else 64
  return c


def encoders_by_kind(smoke: bool) -> dict:
  """An encoder per modality kind, for datasets whose configs do not name one per modality."""
  return {
    "vector": {"name": "mlp", "kwargs": {"hidden": 32 if smoke else 128}},
    "sequence": {"name": "transformer", "kwargs": {"num_layers": 1, "num_heads": 2}},
    "signal": {"name": "conv1d", "kwargs": {"widths": (8, 16) if smoke else (16, 32, 64)}},
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
  }


def use_cmkt(c: ml_collections.ConfigDict, weak: str, strong: str) -> None:
  """Makes ``c`` compare CMKT and its ablations with ``weak`` learning from ``strong``.

  The methods, on the same folds and seeds: the weak modality alone (the baseline), the
  strong one alone (an upper reference: it needs the strong modality at test time),
  translation only, alignment only, CMKT, and CMKT + MT-PKDOT's structural OT term. Every
  sequence modality gets CMKT's encoder, a bidirectional GRU then a transformer encoder.
  """
  # The test-time (weak) modality is `visual` in the config's terms; the strong one is
  # privileged.
  c.visual, c.privileged, c.strong = weak, (strong,), strong
  c.methods = (
    f"{weak}_only",
    f"{strong}_only",
    "cmkt_translation",
    "cmkt_alignment",
    "cmkt",
    "cmkt_ot",
  )
  c.baseline = f"{weak}_only"
  c.encoders_by_kind = {
    **c.encoders_by_kind,
    "sequence": {
      "name": "gru_transformer",
      "kwargs": {"num_layers": 1, "num_heads": 2, "dropout_rate": 0.1},
    },
  }


def parse_arg(arg: str | None, variants: tuple[str, ...], options: tuple[str, ...] = ("smoke",)):
  """``(variant, set of options)`` from ``"<variant>[,option...]"``; the first variant by default.

  The variant may be left out (``"smoke"``, ``"smoke,ablation"``): the first one is meant.

  Raises:
    ValueError: naming the accepted variants and options.
  """
  variant, *given = (arg or variants[0]).split(",")
  if variant in options:
    variant, given = variants[0], [variant, *given]
  if variant not in variants or set(given) - set(options):
    raise ValueError(
      f"Config argument (after ':') must be '<variant>[,option...]' with a variant of "
      f"{variants} (default {variants[0]!r}, may be left out) and options from {options}, "
      f"e.g. '{variants[0]},{options[0]}' or '{options[0]}'; got {arg!r}."
    )
  return variant, set(given)
