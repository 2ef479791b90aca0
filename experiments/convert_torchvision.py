"""A torchvision `r3d_18` / `r2plus1d_18` state-dict file to the Flax encoder's `.npz`.

  pip install '.[convert]'    # torch (CPU) for reading the file; never needed to train
  python -m experiments.convert_torchvision --state_dict=r3d_18-b3b3357e.pth --arch=r3d_18 \\
      --output=r3d_18_kinetics400.npz

The file is a state dict as `torch.save(model.state_dict(), path)` writes it (torchvision's
published `.pth` files are). Train from the result with `encoders.<modality>.pretrained`
pointing at it, the encoder `r3d18` (or `r2plus1d18`) 512-d (`embed_dim = 512`) and the
pixels normalised as the weights expect (`experiments/configs/biovid.py:<variant>,r3d18`
sets all three but the file).
"""

import sys
from pathlib import Path

import jax
from absl import app, flags

try:
  import torch
except ImportError as error:
  raise SystemExit("Converting needs torch: pip install '.[convert]'.") from error

from mtpkd_jax.models import convert_torchvision
from mtpkd_jax.train import variables as variables_lib

_STATE_DICT = flags.DEFINE_string("state_dict", None, "A torchvision state-dict file (.pth).")
_ARCH = flags.DEFINE_enum("arch", None, list(convert_torchvision.ARCHS), "Its architecture.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the encoder's variables (.npz).")
flags.mark_flags_as_required(["state_dict", "arch", "output"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  source, output = Path(_STATE_DICT.value).expanduser(), Path(_OUTPUT.value).expanduser()
  if output.suffix != ".npz":
    raise app.UsageError(f"--output must name an .npz file, got {output}.")
  # weights_only: the file is read as tensors, never unpickled as code.
  state_dict = torch.load(source, map_location="cpu", weights_only=True)
  if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
    sys.exit(f"{source} is not a state dict (a mapping of names to tensors).")
  arrays = {k: v.detach().numpy() for k, v in state_dict.items()}
  try:
    values = convert_torchvision.convert(arrays, _ARCH.value)
  except ValueError as error:
    sys.exit(f"{source}: {error}")
  variables_lib.save_npz(output, values)
  count = sum(v.size for v in jax.tree.leaves(values))
  print(f"Wrote {_ARCH.value}'s encoder variables ({count:,} values) from {source} to {output}.")


if __name__ == "__main__":
  app.run(main)
