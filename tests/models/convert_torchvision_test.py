"""Tests for mtpkd_jax.models.convert_torchvision, against torchvision's own models."""

import subprocess
import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest

from mtpkd_jax.models import convert_torchvision
from mtpkd_jax.train import variables as variables_lib

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[2]


def _import_torchvision():
  """torchvision, or a skip of this module saying why it cannot be imported.

  The torchvision wheel on the package index is built for CUDA; next to the CPU torch its
  `torchvision/_meta_registrations.py` fails at import (`RuntimeError: operator
  torchvision::nms does not exist`, pytorch/vision#9077). That module only registers meta
  kernels of the compiled detection ops, which the video models never call, so on that
  error alone an empty module stands in for it.
  """
  try:
    import torchvision
  except ImportError as error:
    pytest.skip(f"torchvision is not installed: {error}", allow_module_level=True)
  except RuntimeError as error:
    if "torchvision::" not in str(error):
      pytest.skip(f"torchvision cannot be imported: {error}", allow_module_level=True)
    for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
      del sys.modules[name]
    name = "torchvision._meta_registrations"
    sys.modules[name] = types.ModuleType(name)
    try:
      import torchvision
    except (ImportError, RuntimeError) as again:
      pytest.skip(f"torchvision cannot be imported: {again}", allow_module_level=True)
  return torchvision


torchvision = _import_torchvision()


def _torch_model(arch: str, seed: int = 0):
  """A randomly initialised torchvision `arch` in eval mode, its BatchNorms randomised too.

  BatchNorm starts as the identity in eval mode (weight 1, bias 0, running mean 0, variance
  1); drawing all four makes the comparison check where each of them goes.
  """
  torch.manual_seed(seed)
  model = getattr(torchvision.models.video, arch)()
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm3d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0.0, 0.1)
        module.running_mean.normal_(0.0, 0.1)
        module.running_var.uniform_(0.5, 1.5)
  return model.eval()


def _state_dict(model) -> dict[str, np.ndarray]:
  return {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def r3d_state_dict():
  return _state_dict(_torch_model("r3d_18"))


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18"])
def test_converted_encoder_gives_torchvision_features(arch):
  model = _torch_model(arch)
  # 16 frames give two tokens; a width of 40 gives odd maps (5, then 3) in the strided convs.
  clip = np.random.default_rng(0).uniform(size=(1, 16, 32, 40, 3)).astype(np.float32)
  mean = np.asarray(convert_torchvision.KINETICS_MEAN, np.float32)
  std = np.asarray(convert_torchvision.KINETICS_STD, np.float32)
  # torchvision takes normalised [N, C, T, H, W] clips; the encoder [0, 1] [N, T, H, W, C].
  torch_clip = torch.from_numpy(((clip - mean) / std).transpose(0, 4, 1, 2, 3).copy())
  with torch.no_grad():
    x = model.stem(torch_clip)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
      x = layer(x)
    feature_map = x.numpy()  # [N, 512, T', H', W']
    model.fc = torch.nn.Identity()
    features = model(torch_clip).numpy()  # [N, 512]: the global average pool before fc.
  encoder = convert_torchvision.encoder(
    arch, pixel_mean=convert_torchvision.KINETICS_MEAN, pixel_std=convert_torchvision.KINETICS_STD
  )
  variables = convert_torchvision.convert(_state_dict(model), arch)
  tokens = np.asarray(jax.jit(encoder.apply)(variables, clip))
  # Tokens are layer4's map averaged over space, one per time step; their mean over time
  # is torchvision's pooled feature vector.
  expected_tokens = feature_map.mean(axis=(3, 4)).transpose(0, 2, 1)
  assert tokens.shape == expected_tokens.shape == (1, 2, 512)
  scale = np.abs(features).max()
  assert scale > 0.1
  np.testing.assert_allclose(tokens, expected_tokens, rtol=1e-5, atol=1e-5 * scale)
  np.testing.assert_allclose(tokens.mean(axis=1), features, rtol=1e-5, atol=1e-5 * scale)


def test_the_variables_are_the_encoders_and_drop_fc_and_counters(r3d_state_dict):
  variables = convert_torchvision.convert(r3d_state_dict, "r3d_18")
  clip = jax.ShapeDtypeStruct((1, 8, 16, 16, 3), np.uint8)
  shapes = jax.eval_shape(convert_torchvision.encoder("r3d_18").init, jax.random.key(0), clip)
  assert jax.tree.map(np.shape, variables) == jax.tree.map(lambda s: s.shape, shapes)
  assert any(k.endswith("num_batches_tracked") for k in r3d_state_dict)
  var = variables["batch_stats"]["stages"]["stage4_block2"]["bn2"]["var"]
  np.testing.assert_array_equal(var, r3d_state_dict["layer4.1.conv2.1.running_var"])
  # Copies: torch updates its buffers in place (in train mode), the variables stay as read.
  assert not np.shares_memory(var, r3d_state_dict["layer4.1.conv2.1.running_var"])


def test_a_broken_state_dict_is_named_entry_by_entry(r3d_state_dict):
  broken = dict(r3d_state_dict)
  del broken["layer3.1.conv2.1.running_var"]
  broken["layer5.0.conv1.0.weight"] = broken["layer4.0.conv1.0.weight"]
  broken["stem.0.weight"] = broken["stem.0.weight"][:, :2]
  with pytest.raises(ValueError) as error:
    convert_torchvision.convert(broken, "r3d_18")
  message = str(error.value)
  assert "missing: layer3.1.conv2.1.running_var;" in message
  assert "unexpected: layer5.0.conv1.0.weight;" in message
  assert "mis-shaped: stem.0.weight (64, 2, 3, 7, 7) (expected (64, 3, 3, 7, 7))" in message


def test_the_wrong_arch_is_refused(r3d_state_dict):
  with pytest.raises(ValueError, match=r"r2plus1d_18 state dict; missing: layer1\.0\.conv1\.0\.0"):
    convert_torchvision.convert(r3d_state_dict, "r2plus1d_18")
  with pytest.raises(ValueError, match="Unknown arch 'mc3_18'"):
    convert_torchvision.convert(r3d_state_dict, "mc3_18")


@pytest.mark.slow
def test_the_command_converts_a_state_dict_file(tmp_path, r3d_state_dict):
  source, output = tmp_path / "r3d_18.pth", tmp_path / "r3d_18.npz"
  torch.save({k: torch.from_numpy(v) for k, v in r3d_state_dict.items()}, source)
  command = [
    sys.executable,
    "-m",
    "experiments.convert_torchvision",
    f"--state_dict={source}",
    "--arch=r3d_18",
    f"--output={output}",
  ]
  done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"to {output}" in done.stdout
  expected = convert_torchvision.convert(r3d_state_dict, "r3d_18")
  jax.tree.map(np.testing.assert_array_equal, variables_lib.load_npz(output), expected)
