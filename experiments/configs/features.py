"""MT-PKDOT, PKDOT and the baselines on your own pre-extracted features.

The file is one ``.npz`` in the features format (see ``mtpkd_jax/data/features.py`` and the
README's "Your own data"); name its test-time modality and the privileged ones:

  python -m experiments.train --config experiments/configs/features.py \\
      --config.features_path=FILE.npz --config.visual=face --config.privileged="('eda',)" \\
      --workdir DIR

``--config.task=classification`` (or ``regression``) where ``y``'s dtype would say otherwise;
``--config.encoders_by_kind.sequence.name=bigru`` to change the encoder of a kind
(``vector``: MLP, ``sequence``: masked transformer by default); ``:smoke`` shrinks everything
to about 2 minutes on 2 CPU cores (mostly compilation).
"""

from ml_collections import config_dict

from experiments.configs import common


def get_config(arg: str | None = None):
  """The experiment config; ``arg`` is ``None`` or ``smoke``."""
  if arg not in (None, "", "smoke"):
    raise ValueError(f"Config argument must be empty or 'smoke', got {arg!r}.")
  smoke = arg == "smoke"
  # Validation subjects (or examples, without subject ids): a fraction of the training ones.
  c = common.base(smoke, val_subjects=0.2)
  c.features_path = config_dict.placeholder(str)
  c.task = config_dict.placeholder(str)  # None: from y's dtype (int: classes, float: targets).
  c.dataset = "features_npz"
  c.dataset_options = {"path": c.get_ref("features_path"), "task": c.get_ref("task")}
  c.visual = config_dict.placeholder(str)
  c.privileged = ()
  hidden = 32 if smoke else 128
  c.encoders_by_kind = {
    "vector": {"name": "mlp", "kwargs": {"hidden": hidden}},
    "sequence": {"name": "transformer", "kwargs": {"num_layers": 1, "num_heads": 2}},
    "signal": {"name": "conv1d", "kwargs": {"widths": (16, 32)}},
    "video": {"name": "cnn3d_small", "kwargs": {"widths": (16, 32, 64), "num_groups": 4}},
  }
  return c
