"""Distance transforms: ``distance_transform`` against scipy, ``signed_distance`` against the
boundary-loss authors' ``one_hot2dist`` (a float64 NumPy/scipy transcription below)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

import jaxloss
from jaxloss import _distance

# One jitted program per (shape, options): shared by every case.
_dt = jax.jit(jaxloss.distance_transform, static_argnames=("spatial_dims", "sampling"))
_sd = jax.jit(jaxloss.signed_distance, static_argnames=(
    "num_classes", "axis", "spatial_dims", "sampling", "ignore_index"))


def _diag(shape, sampling) -> float:
  """The documented no-background value: the grid's diagonal extent."""
  s = (1.0,) * len(shape) if sampling is None else np.broadcast_to(sampling, (len(shape),))
  return math.sqrt(sum((n * float(v)) ** 2 for n, v in zip(shape, s, strict=True)))


def _edt(mask: np.ndarray, sampling=None) -> np.ndarray:
  """scipy's EDT of one grid, with our rule where the grid has no False element."""
  if mask.all():
    return np.full(mask.shape, _diag(mask.shape, sampling))
  return ndimage.distance_transform_edt(mask, sampling=sampling)


def _edt_batch(masks: np.ndarray, k: int, sampling=None) -> np.ndarray:
  flat = masks.reshape((-1,) + masks.shape[masks.ndim - k:])
  return np.stack([_edt(m, sampling) for m in flat]).reshape(masks.shape)


def _one_hot2dist(seg: np.ndarray, sampling=None) -> np.ndarray:
  """Kervadec et al.'s ``one_hot2dist`` (LIVIAETS/boundary-loss) in float64: ``seg[k]`` masks."""
  res = np.zeros(seg.shape, np.float64)
  for k in range(len(seg)):
    pos = seg[k].astype(bool)
    if pos.any():
      neg = ~pos
      res[k] = _edt(neg, sampling) * neg - (_edt(pos, sampling) - 1) * pos
  return res


def _ref_signed(onehot: np.ndarray, sampling=None) -> np.ndarray:
  """``one_hot2dist`` per image of ``[B, C, *spatial]`` masks."""
  return np.stack([_one_hot2dist(s, sampling) for s in onehot])


def _masks(rng, shape, p=0.6) -> np.ndarray:
  return rng.uniform(size=shape) < p


def _close(got, want):
  np.testing.assert_allclose(np.asarray(got), want, rtol=2e-6, atol=2e-5)


# --------------------------------------------------------------------------- distance_transform


@pytest.mark.parametrize("sampling", [None, 0.7, (1.5, 0.5)])
def test_2d_random_masks_equal_scipy(sampling):
  m = _masks(np.random.default_rng(0), (3, 17, 23))
  m[0, 3:12, 4:20] = True  # a large blob: distances well above 1
  got = _dt(m, spatial_dims=2, sampling=sampling)
  assert got.dtype == jnp.float32 and got.shape == m.shape
  _close(got, _edt_batch(m, 2, sampling))


@pytest.mark.parametrize("sampling", [None, (2.0, 1.0, 0.5)])
def test_3d_random_masks_equal_scipy(sampling):
  m = _masks(np.random.default_rng(1), (2, 9, 11, 7), p=0.8)
  _close(_dt(m, spatial_dims=3, sampling=sampling), _edt_batch(m, 3, sampling))


def test_1d_lines_equal_scipy():
  m = _masks(np.random.default_rng(2), (4, 31))
  m[0] = True
  m[1, 5:25] = True
  _close(_dt(m, spatial_dims=1, sampling=0.5), _edt_batch(m, 1, 0.5))
  assert np.asarray(_dt(m, spatial_dims=1, sampling=0.5))[0, 0] == np.float32(31 * 0.5)


def test_several_batch_axes_are_independent():
  m = _masks(np.random.default_rng(3), (2, 3, 8, 6))
  got = _dt(m, spatial_dims=2, sampling=None)
  _close(got, _edt_batch(m, 2))
  _close(got[1, 2], _edt(m[1, 2]))


@pytest.mark.parametrize("sampling", [None, (1.5, 0.5)])
def test_single_pixel_masks(sampling):
  one_true = np.zeros((1, 7, 5), bool)
  one_true[0, 3, 2] = True
  got = np.asarray(_dt(one_true, spatial_dims=2, sampling=sampling))
  assert got[0, 3, 2] == np.float32(1.0 if sampling is None else 0.5)
  assert np.count_nonzero(got) == 1
  one_false = ~one_true
  s = (1.0, 1.0) if sampling is None else sampling
  yy, xx = np.meshgrid(np.arange(7), np.arange(5), indexing="ij")
  want = np.hypot((yy - 3) * s[0], (xx - 2) * s[1])[None]
  _close(_dt(one_false, spatial_dims=2, sampling=sampling), want)


@pytest.mark.parametrize("sampling", [None, (1.5, 0.5)])
def test_all_false_is_zero_and_all_true_is_the_diagonal_extent(sampling):
  m = np.zeros((2, 7, 5), bool)
  m[1] = True
  got = np.asarray(_dt(m, spatial_dims=2, sampling=sampling))
  assert np.all(got[0] == 0)
  np.testing.assert_allclose(got[1], _diag((7, 5), sampling), rtol=1e-7)
  # Larger than any distance a grid with background can hold.
  almost = m[1:].copy()
  almost[0, 0, 0] = False
  assert np.asarray(_dt(almost, spatial_dims=2, sampling=sampling)).max() < got[1].min()


def test_both_first_pass_branches_give_the_same_steps():
  # lax.platform_dependent runs the scan on CPU and the running max/min elsewhere.
  m = _masks(np.random.default_rng(18), (3, 5, 19), p=0.8)
  m[0, 0] = True  # a line with no False element: inf in both
  scan = jax.jit(_distance._steps_scan)(m)
  running = jax.jit(_distance._steps_running)(m)
  np.testing.assert_array_equal(np.asarray(scan), np.asarray(running))
  assert np.isinf(np.asarray(scan)[0, 0]).all()


def test_vmap_equals_the_batched_call():
  m = _masks(np.random.default_rng(4), (3, 2, 6, 8))
  direct = _dt(m, spatial_dims=2, sampling=None)
  vmapped = jax.jit(jax.vmap(lambda x: jaxloss.distance_transform(x, sampling=(1.0, 1.0))))(m)
  np.testing.assert_array_equal(np.asarray(vmapped), np.asarray(direct))


def test_no_gradient_flows_through_the_transform():
  x = jnp.asarray(np.random.default_rng(5).standard_normal((2, 6, 7)), jnp.float32)

  def f(x):  # the mask comes from x, the product is the only differentiable path
    return jnp.sum(jaxloss.distance_transform(x > 0) * x)

  np.testing.assert_array_equal(np.asarray(jax.jit(jax.grad(f))(x)),
                                np.asarray(jaxloss.distance_transform(x > 0)))


def test_distance_transform_errors():
  m = np.zeros((2, 4, 4), bool)
  with pytest.raises(TypeError, match="`mask` must be a boolean mask"):
    jaxloss.distance_transform(m.astype(np.int32))
  for bad in (0, -1, True, 2.0):
    with pytest.raises(ValueError, match="`spatial_dims` must be a positive int"):
      jaxloss.distance_transform(m, spatial_dims=bad)
  with pytest.raises(ValueError, match=r"fewer axes than `spatial_dims`=4"):
    jaxloss.distance_transform(m, spatial_dims=4)
  with pytest.raises(ValueError, match="has 3 entries; expected one per spatial axis"):
    jaxloss.distance_transform(m, sampling=(1.0, 1.0, 1.0))
  for bad in (0.0, -1.0, float("nan"), float("inf"), (1.0, 0.0)):
    with pytest.raises(ValueError, match="must be positive and finite"):
      jaxloss.distance_transform(m, sampling=bad)
  for bad in ("ab", object()):
    with pytest.raises(ValueError, match="`sampling` must"):
      jaxloss.distance_transform(m, sampling=bad)


@given(h=st.integers(1, 6), w=st.integers(1, 6), dy=st.integers(0, 8), dx=st.integers(0, 8),
       seed=st.integers(0, 2**16), aniso=st.booleans())
def test_translated_mask_gives_translated_distances(h, w, dy, dx, seed, aniso):
  # A mask inside a False border: its distances only depend on the mask, not on where it is.
  sampling = (0.5, 2.0) if aniso else None
  canvas = np.zeros((1, 16, 16), bool)
  canvas[0, 1:1 + h, 1:1 + w] = np.random.default_rng(seed).uniform(size=(h, w)) < 0.7
  moved = np.roll(canvas, (dy, dx), axis=(1, 2))
  d0 = np.asarray(_dt(canvas, spatial_dims=2, sampling=sampling))
  d1 = np.asarray(_dt(moved, spatial_dims=2, sampling=sampling))
  np.testing.assert_array_equal(d1, np.roll(d0, (dy, dx), axis=(1, 2)))
  _close(d1, _edt_batch(moved, 2, sampling))


# --------------------------------------------------------------------------- signed_distance


def _labels(rng, shape, c):
  y = rng.integers(0, c, size=shape)
  y[0, : shape[1] // 2] = c - 1  # a large region: distances well above 1
  y[0][y[0] == 1] = 0  # class 1 absent from image 0
  return y.astype(np.int32)


def _onehot(y, c):  # [B, *spatial] -> [B, C, *spatial]; ids outside [0, C) in no class
  return np.moveaxis(np.arange(c) == y[..., None], -1, 1)


@pytest.mark.parametrize("sampling", [None, (1.0, 2.0)])
def test_signed_distance_of_ids_equals_one_hot2dist(sampling):
  y = _labels(np.random.default_rng(6), (3, 12, 10), 4)
  y[2] = 3  # class 3 fills image 2; 0, 1, 2 absent there
  got = _sd(y, num_classes=4, sampling=sampling)
  assert got.dtype == jnp.float32 and got.shape == (3, 12, 10, 4)
  want = _ref_signed(_onehot(y, 4), sampling)
  _close(got, np.moveaxis(want, 1, -1))
  assert np.all(np.asarray(got)[0, ..., 1] == 0)  # absent class
  np.testing.assert_allclose(np.asarray(got)[2, ..., 3], 1 - _diag((12, 10), sampling), rtol=1e-6)


def test_signed_distance_of_masks_equals_one_hot2dist_and_the_ids():
  y = _labels(np.random.default_rng(7), (2, 9, 8), 3)
  onehot = _onehot(y, 3)  # [B, C, H, W]
  want = _ref_signed(onehot, (0.5, 1.5))
  got = _sd(onehot, axis=1, sampling=(0.5, 1.5))
  _close(got, want)
  _close(_sd(onehot.astype(np.float32), axis=1, sampling=(0.5, 1.5), num_classes=3), want)
  _close(_sd(y, num_classes=3, axis=1, sampling=(0.5, 1.5)), want)
  # Multi-hot: each class on its own.
  multi = onehot | _masks(np.random.default_rng(8), onehot.shape, 0.2)
  _close(_sd(multi, axis=1, sampling=(0.5, 1.5)), _ref_signed(multi, (0.5, 1.5)))


def test_signed_distance_3d_and_1d():
  y = _labels(np.random.default_rng(9), (2, 6, 7, 5), 3)
  _close(_sd(y, num_classes=3, sampling=(2.0, 1.0, 0.5)),
         np.moveaxis(_ref_signed(_onehot(y, 3), (2.0, 1.0, 0.5)), 1, -1))
  y1 = _labels(np.random.default_rng(10), (2, 13), 3)
  _close(_sd(y1, num_classes=3, spatial_dims=1),
         np.moveaxis(_ref_signed(_onehot(y1, 3)), 1, -1))


def test_ignored_pixels_lie_outside_every_class():
  y = _labels(np.random.default_rng(11), (2, 9, 8), 3)
  y[0, 4, 2:6] = -100
  y[1, 0, :] = -100
  got = _sd(y, num_classes=3, ignore_index=-100)
  assert np.all(np.isfinite(np.asarray(got)))
  _close(got, np.moveaxis(_ref_signed(_onehot(y, 3)), 1, -1))  # -100 in no class


def test_invalid_labels_give_nan_for_their_image():
  y = _labels(np.random.default_rng(12), (3, 7, 6), 3)
  y[0, 2, 2] = 3
  y[2, 0, 0] = -1
  y[1, 1, 1] = 255  # ignored: not invalid
  got = np.asarray(_sd(y, num_classes=3, ignore_index=255))
  assert np.all(np.isnan(got[0])) and np.all(np.isnan(got[2]))
  _close(got[1], np.moveaxis(_ref_signed(_onehot(y[1:2], 3)), 1, -1)[0])
  # A float mask entry other than 0/1 poisons its (image, class) only.
  onehot = _onehot(y[1:2], 3).astype(np.float32)
  onehot[0, 2, 3, 3] = 0.5
  got = np.asarray(_sd(onehot, axis=1))
  assert np.all(np.isnan(got[0, 2])) and np.all(np.isfinite(got[0, :2]))


def test_signed_distance_has_no_gradient():
  onehot = jnp.asarray(_onehot(_labels(np.random.default_rng(13), (2, 6, 5), 3), 3), jnp.float32)
  g = jax.jit(jax.grad(lambda m: jnp.sum(jaxloss.signed_distance(m, axis=1))))(onehot)
  np.testing.assert_array_equal(np.asarray(g), 0)


def test_signed_distance_under_vmap():
  y = _labels(np.random.default_rng(14), (2, 3, 6, 5), 3)
  got = jax.jit(jax.vmap(lambda t: jaxloss.signed_distance(t, num_classes=3)))(y)
  for i in range(2):
    _close(got[i], np.moveaxis(_ref_signed(_onehot(y[i], 3)), 1, -1))


def test_signed_distance_errors():
  y = np.zeros((2, 4, 4), np.int32)
  m = np.zeros((2, 4, 4, 3), bool)
  with pytest.raises(ValueError, match="needs `num_classes`"):
    jaxloss.signed_distance(y)
  with pytest.raises(ValueError, match="`ignore_index` only applies to integer labels"):
    jaxloss.signed_distance(m, ignore_index=0)
  with pytest.raises(ValueError, match="axis 0 of `labels_or_masks` is the batch axis"):
    jaxloss.signed_distance(y, num_classes=3, axis=0)
  with pytest.raises(ValueError, match="`spatial_dims`=3 disagrees"):
    jaxloss.signed_distance(m, spatial_dims=3)
  with pytest.raises(ValueError, match="expected `num_classes`=4"):
    jaxloss.signed_distance(m, num_classes=4)
  with pytest.raises(ValueError, match=r"rank >= 3"):
    jaxloss.signed_distance(np.zeros((2, 3), bool))
  with pytest.raises(ValueError, match=r"rank >= 2"):
    jaxloss.signed_distance(np.zeros((3,), np.int32), num_classes=2)
  with pytest.raises(ValueError, match="expected one per spatial axis"):
    jaxloss.signed_distance(y, num_classes=3, sampling=(1.0, 1.0, 1.0))
  with pytest.raises(TypeError, match="`labels_or_masks` must be a real"):
    jaxloss.signed_distance(np.zeros((2, 4, 4), np.complex64))
  with pytest.raises(TypeError, match="`num_classes` must be a Python int"):
    jaxloss.signed_distance(y, num_classes=3.0)


# --------------------------------------------------------------------------- slow


@pytest.mark.slow
@pytest.mark.parametrize("shape,sampling", [((2, 256, 200), (0.8, 1.3)),
                                            ((1, 48, 64, 40), (2.5, 0.7, 0.7))])
def test_large_masks_equal_scipy(shape, sampling):
  rng = np.random.default_rng(15)
  m = ndimage.gaussian_filter(rng.standard_normal(shape), (0,) + (3,) * (len(shape) - 1)) < 0.05
  k = len(shape) - 1
  _close(_dt(m, spatial_dims=k, sampling=sampling), _edt_batch(m, k, sampling))


@pytest.mark.slow
def test_export_lowers_for_cpu_cuda_tpu():
  m = _masks(np.random.default_rng(16), (2, 9, 8))
  y = _labels(np.random.default_rng(17), (2, 9, 8), 3)
  cases = [(lambda a: jaxloss.distance_transform(a, sampling=(1.0, 0.5)), m),
           (lambda a: jaxloss.signed_distance(a, num_classes=3, ignore_index=-1), y)]
  for fn, arg in cases:
    spec = jax.ShapeDtypeStruct(arg.shape, arg.dtype)
    exported = jax.export.export(jax.jit(fn), platforms=("cpu", "cuda", "tpu"))(spec)
    assert exported.platforms == ("cpu", "cuda", "tpu")
    np.testing.assert_array_equal(np.asarray(exported.call(arg)), np.asarray(fn(arg)))


def test_signed_distance_ignore_index_inside_the_class_range_belongs_to_no_class():
  """ignore_index=1 inside [0, C): the maps of the same ids with those pixels set to an
  out-of-range ignore_index (class 1 absent: φ = 0 for it)."""
  rng = np.random.default_rng(7)
  y = rng.integers(0, 3, size=(2, 6, 5)).astype(np.int32)
  got = np.asarray(jaxloss.signed_distance(y, num_classes=3, ignore_index=1))
  want = np.asarray(jaxloss.signed_distance(np.where(y == 1, 255, y), num_classes=3,
                                            ignore_index=255))
  np.testing.assert_array_equal(got, want)
  assert np.all(got[..., 1] == 0)
