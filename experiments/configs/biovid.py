"""MT-PKDOT, PKDOT and the baselines on BioVid Part A / B: video student, physiology privileged.

Build the dataset once from your download (README, "Datasets"), then train:

  python -m experiments.build_dataset --dataset=biovid/part_a_binary --manual_dir=DIR
  python -m experiments.train --config experiments/configs/biovid.py:part_a_binary \\
      --workdir results/biovid_a_binary

``arg`` is ``<variant>[,loso][,r3d18|,r2plus1d18][,smoke]``, variant one of ``part_a_binary |
part_a_5class | part_b_binary | part_b_5class``. Without ``loso``: 5 folds by subject; with it,
leave-one-subject-out (one run per subject). Validation subjects are carved from each fold's
training subjects. Accuracy and macro-F1 on the test subjects. ``smoke`` trains on generated
dummy files in the release layout, in minutes (mostly compilation).

The video encoder is the frame transformer, or with ``r3d18`` / ``r2plus1d18`` the release's
R3D-18 (or R(2+1)D-18) on pixels normalised as torchvision's Kinetics-400 weights expect,
with every modality's tokens 512-d as in the release. ``encoders.video.pretrained`` (empty:
random weights) starts stage 0 from an ``.npz`` that ``experiments/convert_torchvision.py``
wrote:

  python -m experiments.convert_torchvision --state_dict=r3d_18-b3b3357e.pth --arch=r3d_18 \\
      --output=r3d_18_kinetics400.npz
  python -m experiments.train --config experiments/configs/biovid.py:part_a_binary,r3d18 \\
      --config.encoders.video.pretrained=r3d_18_kinetics400.npz --workdir results/biovid_r3d
"""

from experiments.configs import common
from mtpkd_jax.models import convert_torchvision

VARIANTS = ("part_a_binary", "part_a_5class", "part_b_binary", "part_b_5class")
SUBJECTS = {"a": 87, "b": 86}  # In the releases (DATASETS.md); LOSO runs one fold each.
RESNETS = ("r3d18", "r2plus1d18")


def _resnet(name: str) -> dict:
  """The video ResNet ``name`` (at the config's width), on pixels as Kinetics weights expect."""
  kwargs = {
    "pixel_mean": convert_torchvision.KINETICS_MEAN,
    "pixel_std": convert_torchvision.KINETICS_STD,
  }
  return {"name": name, "kwargs": kwargs}


def get_config(arg: str | None = None):
  """The experiment config; ``arg`` is ``<variant>[,loso][,r3d18|,r2plus1d18][,smoke]``."""
  variant, options = common.parse_arg(arg, VARIANTS, ("loso", "smoke", *RESNETS))
  smoke = "smoke" in options
  c = common.base(smoke)
  c.dataset = f"biovid/{variant}"
  c.dataset_options = {"dummy": True, "image_size": 16} if smoke else {}
  c.visual, c.privileged = "video", ("physio",)
  c.encoders_by_kind = common.encoders_by_kind(smoke)
  resnets = sorted(options & set(RESNETS))
  if len(resnets) > 1:
    raise ValueError(f"Choose one video ResNet of {RESNETS}; got {arg!r}.")
  video = _resnet(resnets[0]) if resnets else c.encoders_by_kind.video.to_dict()
  c.encoders = {"video": {**video, "pretrained": ""}}
  if resnets and not smoke:
    c.embed_dim = 512  # The release's width, and the converted weights'.
  if "loso" in options and not smoke:
    c.num_folds = c.num_runs = SUBJECTS[variant.split("_")[1]]
  elif not smoke:
    c.num_folds, c.num_runs = 5, 5
  c.stages.unimodal.epochs = 2 if smoke else 30
  return c
