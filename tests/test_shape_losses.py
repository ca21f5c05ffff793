"""Shape-aware losses: MONAI parity on recorded blobs, a float64 boundary-loss reference,
the ignore_index and empty-class rules, gradients and batch-level sharding.

The contract battery (``tests/cases_shape.py``) covers jit, vmap, masks, reductions,
extremes, dtypes and hostile inputs.
"""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads
from scipy import ndimage

import jaxloss

DATA = json.loads((pathlib.Path(__file__).parent / "peer_data" /
                   "monai_shape_cases.json").read_text())


def _last(x: np.ndarray) -> np.ndarray:
  """NCHW[D] -> channels last."""
  return np.moveaxis(np.asarray(x), 1, -1)


def _inputs(name: str):
  data = DATA["inputs"][name]
  x = np.asarray(DATA["inputs"][data.get("input_from", name)]["input"], np.float32)
  t = np.asarray(data["target"], data["target_dtype"])
  t = t[:, 0].astype(np.int32) if t.shape[1] == 1 and t.dtype.kind == "i" else _last(t)
  return _last(x), t


def _activation(kw: dict) -> str | None:
  return "softmax" if kw.get("softmax") else "sigmoid" if kw.get("sigmoid") else None


def _map_hausdorff(kw: dict, ndim: int) -> dict:
  out = {"activation": _activation(kw), "alpha": kw.get("alpha", 2.0),
         "include_background": kw.get("include_background", False),
         "reduction": kw.get("reduction", "mean")}
  if kw.get("batch"):
    out["reduce_axes"] = tuple(range(ndim - 1))
  return out


def _map_cl_dice(kw: dict) -> dict:
  s = kw.get("smooth_nr", 1.0)
  assert s == kw.get("smooth_dr", 1.0)
  out = {"activation": _activation(kw), "iterations": kw.get("iter_", 3), "smooth": s,
         "harmonic_smooth": kw.get("smooth", 1e-4), "per_class": False,
         "include_background": kw.get("include_background", True),
         "reduction": kw.get("reduction", "mean")}
  if "alpha" in kw:
    out["alpha"] = kw["alpha"]
  return out


@functools.cache
def _value_and_grad(name: str, options: tuple):
  fn = getattr(jaxloss, name)
  return jax.jit(jax.value_and_grad(lambda x, y: jnp.sum(fn(x, y, **dict(options)))))


@functools.cache
def _value(name: str, options: tuple):
  return jax.jit(functools.partial(getattr(jaxloss, name), **dict(options)))


def _cases(loss: str):
  """The recorded cases of ``loss``; the fast run keeps the first (with a gradient)."""
  cases = [(i, c) for i, c in enumerate(DATA["cases"]) if c["loss"] == loss]
  return [pytest.param(c, id=f"{c['inputs']}-{i}", marks=() if j == 0 else pytest.mark.slow)
          for j, (i, c) in enumerate(cases)]


def _check(name: str, options: dict, case: dict, expected, ours_of=lambda v: v):
  x, y = _inputs(case["inputs"])
  opts = tuple(sorted(options.items()))
  if "grad" in case:
    value, grad = _value_and_grad(name, opts)(x, y)
    np.testing.assert_allclose(grad, _last(np.asarray(case["grad"])), rtol=1e-4, atol=1e-6)
    assert np.isclose(value, np.sum(expected), rtol=1e-5)
  value = _value(name, opts)(x, y)
  np.testing.assert_allclose(ours_of(np.asarray(value)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", _cases("HausdorffDTLoss"))
def test_hausdorff_dt_loss_equals_monai(case):
  kw = case["kwargs"]
  x, _ = _inputs(case["inputs"])
  options = _map_hausdorff(kw, x.ndim)
  expected = np.asarray(case["monai"])
  ours_of = lambda v: v  # noqa: E731
  if options["reduction"] == "none":
    expected = expected.reshape(expected.shape[:2])  # MONAI keeps size-1 spatial axes
    if kw.get("batch"):
      expected = expected[0]
    if not options["include_background"]:
      ours_of = lambda v: v[..., 1:]  # noqa: E731 - MONAI drops the channel; ours masks it
  _check("hausdorff_dt_loss", options, case, expected, ours_of)


@pytest.mark.parametrize("case", _cases("SoftclDiceLoss"))
def test_cl_dice_loss_equals_monai(case):
  _check("cl_dice_loss", _map_cl_dice(case["kwargs"]), case, np.asarray(case["monai"]))


@pytest.mark.parametrize("case", _cases("SoftDiceclDiceLoss"))
def test_dice_cl_dice_loss_equals_monai(case):
  _check("dice_cl_dice_loss", _map_cl_dice(case["kwargs"]), case, np.asarray(case["monai"]))


@pytest.mark.parametrize("case", _cases("BoundaryLoss"))
def test_boundary_loss_equals_monai_times_the_kept_classes(case):
  """MONAI averages the per-(image, class) pixel means; ours sums the classes. A class
  filling an image (``2d_full``, image 1) is MONAI's 0 and our no-background rule."""
  kw = case["kwargs"]
  x, y = _inputs(case["inputs"])
  c = x.shape[-1]
  options = {"activation": _activation(kw),
             "include_background": kw.get("include_background", True)}
  kept = c - (0 if options["include_background"] else 1)
  per_image = np.asarray(_value("boundary_loss", tuple(sorted(
      {**options, "reduction": "none"}.items())))(x, y))
  monai = np.asarray(case["monai"])
  if kw.get("reduction") == "none":
    expected = monai.sum(-1)
    if case["inputs"] == "2d_full":
      p = np.asarray(jax.nn.softmax(x[1], -1), np.float64)
      diag = np.hypot(*y.shape[1:])
      expected[1] = np.mean(p[..., 0] * (1 - diag))  # φ_0 = -(diag - 1), classes 1, 2 absent
      assert monai[1].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(per_image, expected, rtol=1e-5, atol=1e-6)
  else:
    np.testing.assert_allclose(per_image.mean(), float(monai) * kept, rtol=1e-5, atol=1e-6)
  if "grad" in case:
    _check("boundary_loss", {**options, "reduction": "none"}, case, monai.sum(-1))


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == "2d_probs" else pytest.mark.slow)
                                  for n in sorted(DATA["soft_skel"])])
def test_soft_skeleton_equals_monai(name):
  rec = DATA["soft_skel"][name]
  x = _last(np.asarray(DATA["inputs"][name]["input"], np.float32))
  if rec["sigmoid"]:
    x = jax.nn.sigmoid(x)
  got = jax.jit(functools.partial(jaxloss.soft_skeleton, iterations=rec["iter_"]))(x)
  np.testing.assert_allclose(got, _last(np.asarray(rec["monai"])), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- boundary: float64


def _one_hot2dist(seg: np.ndarray, sampling) -> np.ndarray:
  """The authors' ``one_hot2dist`` (LIVIAETS/boundary-loss ``utils.py``), float64."""
  res = np.zeros(seg.shape)
  for k in range(len(seg)):
    pos = seg[k].astype(bool)
    if pos.any():
      neg = ~pos
      res[k] = (ndimage.distance_transform_edt(neg, sampling=sampling) * neg
                - (ndimage.distance_transform_edt(pos, sampling=sampling) - 1) * pos)
  return res


def _blobs(rng, batch, c, shape, sigma=1.5):
  field = ndimage.gaussian_filter(rng.standard_normal((batch, c) + shape),
                                  sigma=(0, 0) + (sigma,) * len(shape))
  return field.argmax(1).astype(np.int32)


def test_boundary_loss_equals_the_float64_formula():
  """``mean_b (1/N_b) Σ_{x kept} Σ_c w_c s_c φ_c`` with the authors' φ (scipy, float64):
  anisotropic sampling, class weights, no background, ignore_index, 2-D and 3-D. The
  authors' SurfaceLoss(idc=K) is this divided by |K|."""
  rng = np.random.default_rng(0)
  cw = np.array([0.0, 1.5, 0.5])
  for shape, sampling in (((12, 9), (1.0, 0.6)), ((6, 7, 5), (2.0, 1.0, 0.5))):
    y = _blobs(rng, 2, 3, shape)
    y[1][y[1] == 2] = 1  # class 2 absent from image 1
    ignored = rng.uniform(size=y.shape) < 0.15
    y_ign = np.where(ignored, 255, y).astype(np.int32)
    x = rng.normal(size=y.shape + (3,))
    with jax.enable_x64(True):
      @jax.jit
      def run(x, y, y_ign, sampling=sampling):
        options = {"activation": "softmax", "sampling": sampling, "reduction": "none"}
        return (jaxloss.boundary_loss(x, y, class_weights=cw, **options),
                jaxloss.boundary_loss(x, y_ign, class_weights=cw, ignore_index=255, **options),
                jaxloss.boundary_loss(x, y, include_background=False, **options))
      plain, with_ignored, no_background = run(x, y, y_ign)
      assert plain.dtype == jnp.float64
      plain, with_ignored, no_background = map(np.asarray, (plain, with_ignored, no_background))
    e = np.exp(x - x.max(-1, keepdims=True))
    s = e / e.sum(-1, keepdims=True)
    for got, labels, weights in ((plain, y, cw), (with_ignored, y_ign, cw),
                                 (no_background, y, np.array([0.0, 1.0, 1.0]))):
      kept = labels != 255
      expected = []
      for b in range(len(y)):
        seg = np.stack([(labels[b] == k) for k in range(3)])  # ignored: no class
        phi = np.moveaxis(_one_hot2dist(seg, sampling), 0, -1)
        per_pixel = (s[b] * phi * weights).sum(-1)
        expected.append(per_pixel[kept[b]].sum() / kept[b].sum())
      np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-6)
    # The authors' SurfaceLoss(idc=[1, 2]): the einsum mean over images, kept classes, pixels.
    dist = np.stack([_one_hot2dist(np.stack([y[b] == k for k in range(3)]), sampling)
                     for b in range(len(y))])
    surface = np.mean(np.moveaxis(s, -1, 1)[:, 1:] * dist[:, 1:])
    np.testing.assert_allclose(np.mean(no_background) / 2, surface, rtol=1e-6)


def test_boundary_loss_precomputed_distance_maps_equal_labels():
  rng = np.random.default_rng(1)
  y = _blobs(rng, 2, 3, (8, 6))
  x = rng.normal(size=(2, 8, 6, 3)).astype(np.float32)

  @jax.jit
  def run(x, y):
    phi = jaxloss.signed_distance(y, num_classes=3)
    a = jaxloss.boundary_loss(x, y, activation="softmax", reduction="none")
    b = jaxloss.boundary_loss(x, None, distance_maps=phi, activation="softmax",
                              reduction="none")
    g = jax.grad(lambda x: jaxloss.boundary_loss(x, None, distance_maps=phi,
                                                 where=jnp.array([True, False])))(x)
    return a, b, g

  a, b, g = run(x, y)
  np.testing.assert_allclose(a, b, rtol=1e-6)
  assert np.all(np.asarray(g)[1] == 0) and np.any(np.asarray(g)[0] != 0)


def test_boundary_loss_of_ids_equals_the_one_hot_route_and_poisons_only_unmasked_images():
  """Class ids (φ built from the ids) against φ of the one-hot float maps passed as
  ``distance_maps``: ``ignore_index`` inside ``[0, C)`` is a pixel of no class; an
  invalid id makes its image NaN in value and gradient unless ``where`` masks it."""
  rng = np.random.default_rng(5)
  y = _blobs(rng, 3, 3, (8, 6))
  x = rng.normal(size=(3, 8, 6, 3)).astype(np.float32)
  y[0, 0, 0] = 7  # invalid, unmasked image
  y[2, 1, 1] = -3  # invalid, masked image
  keep = (y != 1) & (y >= 0) & (y < 3)
  t = ((y[..., None] == np.arange(3)) & keep[..., None]).astype(np.float32)
  where = jnp.array([True, True, False])

  @jax.jit
  def run(x, y, t):
    def ids(x):
      return jaxloss.boundary_loss(x, y, activation="softmax", ignore_index=1, where=where,
                                   reduction="none")
    def hot(x):  # the maps of the one-hot route, passed in
      phi = jaxloss.signed_distance(t, axis=-1)
      return jaxloss.boundary_loss(x, y, distance_maps=phi, activation="softmax",
                                   ignore_index=1, where=where, reduction="none")
    return ids(x), hot(x), jax.grad(lambda x: jnp.sum(ids(x)[1:]))(x), jax.grad(
        lambda x: ids(x)[0])(x)

  a, b, g, g0 = map(np.asarray, run(x, y, t))
  assert np.isnan(a[0]) and np.isnan(g0[0]).any() and np.isfinite(g[1:]).all()
  # Image 1 has no invalid id: the two routes agree.
  np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
  assert a[2] == 0 and b[2] == 0 and np.all(g[2] == 0)


# --------------------------------------------------------------------------- ignore_index, empty


def _zeroed(p, y, ignore):
  keep = (y != ignore)[..., None]
  one_hot = (y[..., None] == np.arange(p.shape[-1])) & keep
  return np.where(keep, p, 0.0).astype(np.float32), one_hot.astype(np.float32), keep


def test_ignored_pixels_belong_to_no_class_and_leave_every_sum():
  """An ignored pixel is a pixel with probability and target 0 for every class (no class:
  background of every distance map and skeleton), left out of the pixel counts."""
  rng = np.random.default_rng(2)
  y = _blobs(rng, 2, 3, (9, 8))
  y = np.where(rng.uniform(size=y.shape) < 0.2, -100, y).astype(np.int32)
  p = rng.dirichlet(np.ones(3), size=y.shape).astype(np.float32)
  p0, t0, keep = _zeroed(p, y, -100)
  ratio = keep[0].size / keep.sum(axis=(1, 2, 3))  # all pixels / kept pixels, per image
  f = jax.jit(lambda p, y, p0, t0: [
      [loss(p, y, ignore_index=-100, reduction="none"), loss(p0, t0, reduction="none")]
      for loss in (jaxloss.hausdorff_dt_loss, jaxloss.cl_dice_loss, jaxloss.boundary_loss)])
  (hd, hd0), (cl, cl0), (bd, bd0) = [map(np.asarray, pair) for pair in f(p, y, p0, t0)]
  np.testing.assert_allclose(hd, hd0 * ratio[:, None], rtol=1e-5)
  np.testing.assert_allclose(cl, cl0, rtol=1e-6)
  np.testing.assert_allclose(bd, bd0 * ratio, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_nan_at_ignored_pixels_is_harmless():
  """NaN logits at ignored pixels: the same value, and a zero gradient there."""
  rng = np.random.default_rng(2)
  y = _blobs(rng, 2, 3, (9, 8))
  y = np.where(rng.uniform(size=y.shape) < 0.2, -100, y).astype(np.int32)
  x = rng.normal(size=y.shape + (3,)).astype(np.float32)
  x_bad = np.where(y[..., None] == -100, np.nan, x).astype(np.float32)
  losses = (jaxloss.hausdorff_dt_loss, jaxloss.cl_dice_loss, jaxloss.boundary_loss)
  h = jax.jit(lambda x: [jax.value_and_grad(lambda x, loss=loss: loss(
      x, y, activation="softmax", ignore_index=-100))(x) for loss in losses])
  for (v, gr), (v_bad, gr_bad) in zip(h(x), h(x_bad), strict=True):
    np.testing.assert_allclose(v_bad, v, rtol=1e-6)
    np.testing.assert_allclose(gr_bad, gr, rtol=1e-6, atol=1e-8)
    assert np.all(np.asarray(gr_bad)[y == -100] == 0)


def test_empty_and_full_classes():
  """An empty class predicted empty: Hausdorff 0 (no boundary: zero fields), clDice
  1 - 2/(2 + ε) (both ratios s/s = 1), boundary 0 (φ = 0). A class filling the image and
  predicted everywhere: Hausdorff 0; boundary -(diag - 1)·p."""
  y = np.zeros((1, 6, 5), np.int32)
  p = np.zeros((1, 6, 5, 2), np.float32)
  p[..., 0] = 0.9
  p[..., 1] = 0.1  # class 1 empty, predicted below 0.5 everywhere
  hd, cl, bd, cl0 = jax.jit(lambda p, y: (
      jaxloss.hausdorff_dt_loss(p, y, reduction="none"),
      jaxloss.cl_dice_loss(p, y, reduction="none"), jaxloss.boundary_loss(p, y, reduction="none"),
      jaxloss.cl_dice_loss(p, y, smooth=0.0, harmonic_smooth=0.0)))(p, y)
  np.testing.assert_array_equal(hd, [[0.0, 0.0]])
  np.testing.assert_allclose(cl[0, 1], 1 - 2 / (2 + 1e-4), atol=1e-7)  # float32 cancellation
  np.testing.assert_allclose(bd, [0.9 * (1 - np.hypot(6, 5))], rtol=1e-6)
  assert np.isfinite(cl0)


@pytest.mark.slow  # the contract's slow run also checks the losses' second derivatives
def test_check_grads_of_the_skeleton_and_the_losses():
  rng = np.random.default_rng(3)
  with jax.enable_x64(True):
    x = rng.normal(size=(1, 5, 4, 2))
    y = rng.integers(0, 2, size=(1, 5, 4)).astype(np.int32)
    skel = jax.jit(lambda x: jnp.sum(jnp.sin(jaxloss.soft_skeleton(jax.nn.sigmoid(x)))))
    check_grads(skel, (x,), order=2, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)
    for loss in (jaxloss.hausdorff_dt_loss, jaxloss.cl_dice_loss, jaxloss.boundary_loss):
      f = jax.jit(lambda x, loss=loss: loss(x, y, activation="softmax"))
      check_grads(f, (x,), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)


def test_options_and_shapes_are_checked():
  x = np.zeros((2, 4, 4, 3), np.float32)
  y = np.zeros((2, 4, 4), np.int32)
  with pytest.raises(ValueError, match="`predictions` has shape"):
    jaxloss.hausdorff_dt_loss(np.zeros((2, 3), np.float32), np.zeros(2, np.int32))
  with pytest.raises(ValueError, match="`distance_maps` has shape"):
    jaxloss.boundary_loss(x, y, distance_maps=np.zeros((2, 4, 4, 2), np.float32))
  with pytest.raises(ValueError, match="`sampling`"):
    jaxloss.boundary_loss(x, y, distance_maps=np.zeros_like(x), sampling=2.0)
  with pytest.raises(ValueError, match="`labels` is None"):
    jaxloss.boundary_loss(x, None)
  with pytest.raises(ValueError, match="`iterations`"):
    jaxloss.cl_dice_loss(x, y, iterations=-1)
  with pytest.raises(ValueError, match="`iterations`"):
    jaxloss.soft_skeleton(x, iterations=1.5)
  with pytest.raises(ValueError, match="`alpha`"):
    jaxloss.dice_cl_dice_loss(x, y, alpha=1.5)
  with pytest.raises(ValueError, match="reduction='none'"):
    jaxloss.dice_cl_dice_loss(x, y, reduction="none")
  with pytest.raises(ValueError, match="`sampling` has 3 entries"):
    jaxloss.hausdorff_dt_loss(x, y, sampling=(1.0, 1.0, 1.0))


# --------------------------------------------------------------------------- sharding


@pytest.mark.slow
@pytest.mark.parametrize("name,options", [
    ("hausdorff_dt_loss", {"activation": "softmax", "reduce_axes": (0, 1, 2)}),
    ("cl_dice_loss", {"activation": "softmax", "reduce_axes": (0, 1, 2)}),
    ("cl_dice_loss", {"activation": "sigmoid", "reduce_axes": (0, 1, 2), "per_class": False,
                      "include_background": False}),
    ("dice_cl_dice_loss", {"activation": "softmax", "reduce_axes": (0, 1, 2),
                           "per_class": False}),
], ids=["hausdorff", "cl_dice", "cl_dice_pooled", "dice_cl_dice"])
@pytest.mark.parametrize("reduction", ["mean", "weighted_mean"])
def test_batch_level_shard_map_with_axis_name_equals_unsharded(name, options, reduction):
  n = jax.device_count()
  mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  rng = np.random.default_rng(4)
  x = rng.normal(size=(2 * n, 6, 5, 3)).astype(np.float32)
  y = rng.integers(0, 3, size=(2 * n, 6, 5)).astype(np.int32)
  fn = functools.partial(getattr(jaxloss, name), reduction=reduction, **options)
  kwargs = {}
  if name == "dice_cl_dice_loss":  # per-image weights and mask inside the batch sums
    w = rng.uniform(0.5, 2.0, size=2 * n).astype(np.float32)
    m = np.ones(2 * n, bool)
    m[[0, 5]] = False
    kwargs = {"weights": w, "where": m}

  def local(x, y, kw):
    return fn(x, y, axis_name="data", **kw)

  sharded = jax.shard_map(local, mesh=mesh, in_specs=P("data"), out_specs=P())
  value, grad = jax.jit(jax.value_and_grad(lambda x: sharded(x, y, kwargs)))(x)
  ref_value, ref_grad = jax.value_and_grad(lambda x: fn(x, y, **kwargs))(x)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-7)
