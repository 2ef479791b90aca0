"""Tests for mtpkd_jax.models.physio."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.signal
from jax.sharding import PartitionSpec as P

from mtpkd_jax.models import physio

# torchvision's published resnet18 total, 1000-way fc and 3-channel stem included.
TORCHVISION_RESNET18 = 11_689_512


@pytest.mark.parametrize("mode", ["psd", "magnitude"])
@pytest.mark.parametrize(
  "window, overlap, nfft, fs", [(16, 4, 128, 1.0), (16, 4, 33, 512.0), (20, 0, 20, 2.0)]
)
def test_spectrogram_matches_scipy(mode, window, overlap, nfft, fs):
  x = np.random.default_rng(0).normal(size=(2, 3, 301)) + 0.5
  _, _, expected = scipy.signal.spectrogram(
    x, fs=fs, window="hann", nperseg=window, noverlap=overlap, nfft=nfft, mode=mode
  )
  got = physio.spectrogram(jnp.asarray(x, jnp.float32), window, overlap, nfft, mode, fs)
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_spectrogram_shape_of_release_emg_input():
  # 3 s of EMG at 512 Hz: 65 frequency by 127 time bins.
  x = jax.ShapeDtypeStruct((4, 1536), jnp.float32)
  assert jax.eval_shape(physio.spectrogram, x).shape == (4, 65, 127)


def _physio_like(rng, batch, time=176):
  """GSR (a slow level near 8), an ECG-like rhythm and EMG-like noise, as the dataset's."""
  t = np.arange(time) / 32
  gsr = (
    8 + 2 * np.sin(0.3 * t + rng.uniform(0, 6, (batch, 1))) + 0.01 * rng.normal(size=(batch, time))
  )
  ecg = np.sin(7 * t + rng.uniform(0, 6, (batch, 1)))
  emg = 3 * rng.normal(size=(batch, time))
  return jnp.asarray(np.stack([gsr, ecg, emg], -1), jnp.float32)


def test_spectrogram_rounds_each_example_alike_whatever_the_batch():
  # Near its floor the log spectrogram magnifies rounding; a batched FFT's rounding depends
  # on the batch's size, which made the ResNet train differently on 1 and 4 devices.
  x = jnp.swapaxes(_physio_like(np.random.default_rng(0), 8), 1, 2)
  log_spectrogram = jax.jit(lambda x: jnp.log(physio.spectrogram(x) + 1e-6))
  whole = log_spectrogram(x)
  for size in (1, 2, 4):
    parts = [log_spectrogram(x[i : i + size]) for i in range(0, len(x), size)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def _norm(tree):
  return float(np.sqrt(sum(np.sum(np.square(leaf)) for leaf in jax.tree.leaves(tree))))


@pytest.mark.slow
def test_spec_resnet18_trains_alike_on_one_and_four_devices():
  """BatchNorm's statistics over the "data" axis, gradients averaged over it: 4 equal 1."""
  rng = np.random.default_rng(0)
  x, y = _physio_like(rng, 8), jnp.asarray(rng.integers(0, 2, 8))
  local = physio.SpecResNet18(features=16)
  synced = local.clone(bn_axis_name="data")
  variables = local.init(jax.random.key(0), x)
  readout = jnp.asarray(rng.normal(size=(16, 2)), jnp.float32)

  def grads(module, params, batch_stats, x, y):
    def loss(params):
      tokens, updates = module.apply(
        {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
      )
      logits = tokens.mean(axis=1) @ readout
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates

    return jax.grad(loss, has_aux=True)(params)

  mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  steps = {
    1: jax.jit(functools.partial(grads, local)),
    4: jax.jit(
      jax.shard_map(
        lambda *args: jax.lax.pmean(grads(synced, *args), "data"),
        mesh=mesh,
        in_specs=(P(), P(), P("data"), P("data")),
        out_specs=P(),
        check_vma=False,
      )
    ),
  }
  trained = {}
  for devices, step in steps.items():
    params, batch_stats = variables["params"], variables["batch_stats"]
    for _ in range(3):
      g, updates = step(params, batch_stats, x, y)
      params = jax.tree.map(lambda p, g: p - 0.01 * g, params, g)
      batch_stats = updates["batch_stats"]
    trained[devices] = params
  moved = _norm(jax.tree.map(jnp.subtract, trained[1], variables["params"]))
  apart = _norm(jax.tree.map(jnp.subtract, trained[4], trained[1]))
  # Float sums in another order set them 4e-5 of the way apart; the batched FFT, 2e-2.
  assert apart < 1e-3 * moved


@pytest.mark.parametrize(
  "kwargs", [dict(window=16, nfft=8), dict(window=16, overlap=16), dict(mode="power")]
)
def test_spectrogram_rejects_bad_arguments(kwargs):
  with pytest.raises(ValueError):
    physio.spectrogram(jnp.zeros((2, 100)), **kwargs)


def _resnet18_features_1ch() -> int:
  """torchvision resnet18 without its fc, with a 1-channel stem, counted by hand."""

  def conv(c_in, c_out, k):
    return c_in * c_out * k * k

  total = conv(1, 64, 7) + 2 * 64
  c_in = 64
  for stage, width in enumerate((64, 128, 256, 512)):
    for block in range(2):
      total += conv(c_in, width, 3) + conv(width, width, 3) + 2 * (2 * width)
      if stage > 0 and block == 0:
        total += conv(c_in, width, 1) + 2 * width
      c_in = width
  return total


def test_spec_resnet18_param_count_and_tokens(param_count):
  expected = _resnet18_features_1ch()
  # Published total = ours + the fc (512 * 1000 + 1000) + the stem's two extra input planes.
  assert expected + 513_000 + 2 * 64 * 7 * 7 == TORCHVISION_RESNET18
  module = physio.SpecResNet18()
  emg = jax.ShapeDtypeStruct((2, 1536, 1), jnp.float32)
  variables = jax.eval_shape(module.init, jax.random.key(0), emg)
  assert param_count(variables["params"]) == expected
  # 127 spectrogram frames -> 64 (stem) -> 32 (pool) -> 32, 16, 8, 4.
  assert jax.eval_shape(module.apply, variables, emg).shape == (2, 4, 512)


def _signals(rng, batch, time=384, channels=2):
  return jnp.asarray(rng.normal(size=(batch, time, channels)), jnp.float32)


@pytest.mark.parametrize(
  "model, num_tokens",
  [
    (functools.partial(physio.Conv1DEncoder, features=16, widths=(8, 16)), 24),
    (functools.partial(physio.SpecResNet18, features=16), 1),
    (functools.partial(physio.SpecResNet18, features=16, log_eps=None, mode="magnitude"), 1),
  ],
  ids=["conv1d", "spec_resnet18", "spec_resnet18_linear"],
)
def test_eval_output_independent_of_batch_mates(
  model, num_tokens, assert_batch_independent, random_variables
):
  rng = np.random.default_rng(0)
  module = model()
  apply = jax.jit(functools.partial(module.apply, random_variables(module, _signals(rng, 3))))
  assert apply(_signals(rng, 3)).shape == (3, num_tokens, 16)
  assert_batch_independent(apply, _signals(rng, 3), _signals(rng, 3), atol=1e-4, rtol=1e-4)


def test_conv1d_token_count_rounds_up():
  module = physio.Conv1DEncoder(features=8, widths=(8, 8), stride=4)
  x = jax.ShapeDtypeStruct((2, 1536 + 1, 3), jnp.float32)
  variables = jax.eval_shape(module.init, jax.random.key(0), x)
  assert jax.eval_shape(module.apply, variables, x).shape == (2, math.ceil(1537 / 16), 8)


@pytest.mark.parametrize(
  "model",
  [physio.Conv1DEncoder, functools.partial(physio.SpecResNet18, features=64)],
  ids=["conv1d", "spec_resnet18"],
)
def test_bfloat16_compute_with_float32_params(model):
  module = model(dtype=jnp.bfloat16, bn_axis_name=None)
  x = jax.ShapeDtypeStruct((2, 384, 1), jnp.float32)
  variables = jax.eval_shape(module.init, jax.random.key(0), x)
  assert {v.dtype for v in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  assert jax.eval_shape(module.apply, variables, x).dtype == jnp.bfloat16


def test_batch_stats_sync_over_a_named_axis(random_variables):
  # Two shards of a batch, normalised with statistics averaged over the "data" axis, match
  # the whole batch normalised at once.
  synced = physio.Conv1DEncoder(features=8, widths=(8,), bn_axis_name="data")
  local = synced.clone(bn_axis_name=None)
  x = _signals(np.random.default_rng(0), 4)
  variables = random_variables(local, x)

  def train_tokens(module, batch):
    return module.apply(variables, batch, train=True, mutable=["batch_stats"])[0]

  whole = jax.jit(functools.partial(train_tokens, local))(x)
  shards = jax.jit(jax.vmap(functools.partial(train_tokens, synced), axis_name="data"))(
    x.reshape(2, 2, *x.shape[1:])
  )
  np.testing.assert_allclose(shards.reshape(whole.shape), whole, atol=1e-4, rtol=1e-4)


def test_rejects_non_signal_input():
  with pytest.raises(ValueError, match="batch, time, channels"):
    physio.Conv1DEncoder().init(jax.random.key(0), jnp.zeros((2, 100)))
