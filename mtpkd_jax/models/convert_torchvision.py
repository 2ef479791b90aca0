"""torchvision `r3d_18` / `r2plus1d_18` state dicts to the variables of `R3D18` / `R2Plus1D18`.

Pure NumPy and Flax: a state dict here is a mapping from torchvision's parameter names to
arrays (`experiments/convert_torchvision.py` reads the `.pth` file with torch, the one place
that imports it). The result is the encoder's `{"params": ..., "batch_stats": ...}` at
`features=512`: conv kernels go from PyTorch's `[out, in, t, h, w]` to Flax's
`[t, h, w, in, out]`, BatchNorm's weight, bias, running mean and variance to its scale, bias,
mean and var. The classifier (`fc`) and BatchNorm's `num_batches_tracked` counters have no
place in the encoder and are dropped.

The encoder's tokens are the last feature map averaged over space, kept over time; their
mean over time is torchvision's feature vector before `fc` (its global average pool over
time, height and width). The published weights expect clips scaled to [0, 1] and normalised
with `KINETICS_MEAN` and `KINETICS_STD`: pass them as the encoder's `pixel_mean` and
`pixel_std`.
"""

import re
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from mtpkd_jax.models import video

# The torchvision builders and whether their convs are (2+1)D-factored.
ARCHS = {"r3d_18": False, "r2plus1d_18": True}
# torchvision's `VideoClassification` preset for its Kinetics-400 weights (RGB, on [0, 1]).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

# torchvision's state-dict entries that the encoder has no place for.
_DROPPED = re.compile(r"fc\.(weight|bias)|.*\.num_batches_tracked")
# Flax leaf name -> torchvision's (conv kernels and BatchNorm scales are both `weight`).
_LEAVES = {
  "kernel": "weight",
  "scale": "weight",
  "bias": "bias",
  "mean": "running_mean",
  "var": "running_var",
}
# The stems' Flax modules -> torchvision's `nn.Sequential` entries (ReLUs take indices too).
_STEMS = {
  False: {"stem": "stem.0", "stem_bn": "stem.1"},
  True: {
    "stem_spatial": "stem.0",
    "stem_spatial_bn": "stem.1",
    "stem_temporal": "stem.3",
    "stem_bn": "stem.4",
  },
}
# A block's Flax modules -> torchvision's; `conv1` is `Sequential(conv, bn, relu)`.
_BLOCK = {
  "conv1": "conv1.0",
  "bn1": "conv1.1",
  "conv2": "conv2.0",
  "bn2": "conv2.1",
  "shortcut": "downsample.0",
  "shortcut_bn": "downsample.1",
}
# Inside a (2+1)D conv, `Sequential(spatial conv, bn, relu, temporal conv)`.
_CONV2PLUS1D = {"spatial": "0", "spatial_bn": "1", "temporal": "3"}
# PyTorch's conv weight `[out, in, t, h, w]` -> Flax's kernel `[t, h, w, in, out]`.
_KERNEL_AXES = (2, 3, 4, 1, 0)


def encoder(arch: str, **kwargs) -> nn.Module:
  """The Flax encoder that `arch`'s weights convert to (`features=512`).

  Args:
    arch: `r3d_18` or `r2plus1d_18`.
    **kwargs: Further encoder attributes, e.g. `pixel_mean`, `pixel_std`, `dtype`.

  Raises:
    ValueError: If `arch` is unknown.
  """
  if arch not in ARCHS:
    raise ValueError(f"Unknown arch {arch!r}; known: {', '.join(ARCHS)}.")
  return video.VideoResNet((2, 2, 2, 2), factorized=ARCHS[arch], features=512, **kwargs)


def torch_name(path: tuple[str, ...], factorized: bool) -> str:
  """The torchvision state-dict name of the Flax leaf at `path` (collection left out).

  Args:
    path: e.g. `("stages", "stage2_block1", "conv1", "spatial", "kernel")`.
    factorized: The R(2+1)D layout.

  Returns:
    e.g. `"layer2.0.conv1.0.0.weight"`.
  """
  *modules, leaf = path
  if modules[0] != "stages":
    return f"{_STEMS[factorized][modules[0]]}.{_LEAVES[leaf]}"
  stage, block = re.fullmatch(r"stage(\d+)_block(\d+)", modules[1]).groups()
  parts = [f"layer{stage}", str(int(block) - 1), _BLOCK[modules[2]]]
  parts += [_CONV2PLUS1D[m] for m in modules[3:]]
  return ".".join([*parts, _LEAVES[leaf]])


def _torch_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
  """The PyTorch shape of the Flax leaf at `path` of shape `shape`."""
  if path[-1] != "kernel":
    return shape
  return tuple(shape[_KERNEL_AXES.index(axis)] for axis in range(len(shape)))


def _listed(names, limit: int = 8) -> str:
  names = sorted(names)
  more = f" and {len(names) - limit} more" if len(names) > limit else ""
  return ", ".join(names[:limit]) + more


def convert(state_dict: Mapping[str, np.ndarray], arch: str) -> dict:
  """The encoder variables of a torchvision `arch` state dict.

  Args:
    state_dict: torchvision's names to arrays, e.g. the items of
      `torch.load(path, weights_only=True)`, each converted with `v.numpy()`.
    arch: `r3d_18` or `r2plus1d_18`.

  Returns:
    ``{"params": ..., "batch_stats": ...}`` of `encoder(arch)`, float32 NumPy arrays.

  Raises:
    ValueError: Naming every missing, unexpected and mis-shaped entry, if the state dict
      is not one of `arch`.
  """
  module = encoder(arch)
  clip = jax.ShapeDtypeStruct((1, 1, 8, 8, 3), jnp.uint8)
  template = traverse_util.flatten_dict(jax.eval_shape(module.init, jax.random.key(0), clip))
  names = {path: torch_name(path[1:], ARCHS[arch]) for path in template}
  expected = set(names.values())
  missing = expected - set(state_dict)
  unexpected = {k for k in state_dict if k not in expected and not _DROPPED.fullmatch(k)}
  out, misshaped = {}, []
  for path, leaf in template.items():
    name = names[path]
    if name in missing:
      continue
    value = np.array(state_dict[name], np.float32)  # A copy: never a view of the caller's.
    if value.shape != (shape := _torch_shape(path, leaf.shape)):
      misshaped.append(f"{name} {value.shape} (expected {shape})")
      continue
    out[path] = value.transpose(_KERNEL_AXES) if path[-1] == "kernel" else value
  problems = [
    f"{label}: {_listed(found)}"
    for label, found in (
      ("missing", missing),
      ("unexpected", unexpected),
      ("mis-shaped", misshaped),
    )
    if found
  ]
  if problems:
    raise ValueError(f"Not a torchvision {arch} state dict; " + "; ".join(problems) + ".")
  return traverse_util.unflatten_dict(out)
