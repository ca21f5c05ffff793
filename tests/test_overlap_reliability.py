"""Reliability of the overlap (Dice) family and the compositions (issues 12 and 17).

Every test is named after the behaviour it pins down; references are float64
NumPy transcriptions of the documented formulas, or the same loss on sliced inputs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

C = 3
SCALAR_REDUCTIONS = ("sum", "mean", "weighted_mean", "sum_by_nonzero_weights")


def _logits(seed: int, shape: tuple[int, ...]) -> np.ndarray:
  return (2 * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def _labels(seed: int, shape: tuple[int, ...], c: int = C) -> np.ndarray:
  return np.random.default_rng(seed + 100).integers(0, c, size=shape).astype(np.int32)


def _jit_dict(run):
  """Runs ``run`` (a dict of computations, keys of any kind) as one jitted program."""
  keys = []

  def values():
    out = run()
    keys[:] = list(out)
    return [out[k] for k in keys]

  return dict(zip(keys, jax.jit(values)(), strict=True))


# The integer-label losses, each with activation="softmax" where it has one.
INT_LOSSES = {
    "dice_loss": functools.partial(jaxloss.dice_loss, activation="softmax"),
    "jaccard_loss": functools.partial(jaxloss.jaccard_loss, activation="softmax"),
    "tversky_loss": functools.partial(jaxloss.tversky_loss, activation="softmax", alpha=0.7,
                                      beta=0.3, gamma=1.5),
    "generalized_dice_loss": functools.partial(jaxloss.generalized_dice_loss,
                                               activation="softmax"),
}
PER_CLASS_LOSSES = {k: v for k, v in INT_LOSSES.items() if k != "generalized_dice_loss"}


# --------------------------------------------------------------------------- label dtypes


def _every_loss(x, y, multi):
  out = {name: fn(x, y, reduction="none") for name, fn in INT_LOSSES.items()}
  out["softmax_ce_dice_loss"] = jaxloss.softmax_ce_dice_loss(x, y)
  # Multi-hot labels of an integer or bool dtype are 0/1 maps for BCE + Dice.
  out["sigmoid_bce_dice_loss"] = jaxloss.sigmoid_bce_dice_loss(x, multi)
  return out


def test_every_integer_label_dtype_gives_identical_results():
  x = _logits(0, (2, 5, C))
  for dtype in ("bool", "uint8", "uint16", "int8", "int16", "int32", "int64"):
    y = _labels(0, (2, 5), 2 if dtype == "bool" else C)
    multi = y[..., None] == np.arange(C)
    with jax.enable_x64(dtype == "int64"):
      run = jax.jit(_every_loss)
      got = run(x, y.astype(dtype), multi.astype(dtype))
      want = run(x, y, multi.astype(np.float32))
      for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} {dtype}")


def test_uint8_labels_with_ignore_index_255_equal_int32_labels():
  x = _logits(1, (2, 6, C))
  y = _labels(1, (2, 6))
  y[0, :2] = 255
  for name, fn in INT_LOSSES.items():
    np.testing.assert_array_equal(
        fn(x, y.astype(np.uint8), ignore_index=255, reduction="none"),
        fn(x, y, ignore_index=255, reduction="none"), err_msg=name)
  np.testing.assert_array_equal(
      jaxloss.softmax_ce_dice_loss(x, y.astype(np.uint8), ignore_index=255),
      jaxloss.softmax_ce_dice_loss(x, y, ignore_index=255))


def test_negative_label_never_wraps_in_ce_dice_with_many_classes():
  x = _logits(2, (2, 4, 40))
  y = _labels(2, (2, 4), 40)
  y[0, 1] = -1
  total, parts = jaxloss.softmax_ce_dice_loss(x, y, return_components=True)
  assert np.isnan(total) and np.isnan(parts["ce"]) and np.isnan(parts["dice"])
  dice = jaxloss.dice_loss(x, y, activation="softmax", reduction="none")
  assert np.all(np.isnan(dice[0])) and np.all(np.isfinite(dice[1]))
  y8 = y.astype(np.int8)  # -1 in a narrow dtype: still invalid, never 255 or 39
  assert np.isnan(jaxloss.softmax_ce_dice_loss(x, y8))


# --------------------------------------------------------------------------- ignore_index


def test_ignore_index_inside_class_range_gives_the_issue_example():
  p = jnp.array([[[0.6, 0.4], [0.6, 0.4], [0.0, 1.0], [0.0, 1.0]]])
  y = jnp.array([[0, 0, 1, 1]])
  got = jaxloss.dice_loss(p, y, ignore_index=0, reduction="none")
  np.testing.assert_array_equal(got, [[0.0, 0.0]])
  np.testing.assert_array_equal(got, jaxloss.dice_loss(p[:, 2:], y[:, 2:], reduction="none"))


@pytest.mark.parametrize("ignore", [1, 0, 255])
def test_ignore_index_inside_class_range_equals_slicing(ignore):
  x = _logits(3, (2, 12, C))
  y = _labels(3, (2, 12))
  y[:, :3] = ignore  # every image keeps some pixels and ignores some
  x_nan = x.copy()
  x_nan[y == ignore] = np.nan  # ignored logits never reach the arithmetic
  keep = y != ignore

  def run():
    out = {}
    for name, fn in INT_LOSSES.items():
      out[name] = fn(x_nan, y, ignore_index=ignore, reduction="none")
      out[name, "sliced"] = [fn(x[b:b + 1, keep[b]], y[b:b + 1, keep[b]], reduction="none")[0]
                             for b in range(2)]
      out[name, "grad"] = jax.grad(lambda v, f=fn: f(v, y, ignore_index=ignore))(x_nan)
    # The batch-level sums too: the ignored pixels sliced out of the whole batch.
    for name, fn in PER_CLASS_LOSSES.items():
      out[name, "batch"] = fn(x_nan, y, ignore_index=ignore, reduce_axes=(0, 1),
                              reduction="none")
      out[name, "batch_sliced"] = fn(x[keep][None], y[keep][None], reduce_axes=(0, 1),
                                     reduction="none")
    # The Dice part of CE + Dice is the sliced Dice.
    out["ce_dice"] = jaxloss.softmax_ce_dice_loss(x_nan, y, ignore_index=ignore,
                                                  reduction="sum", return_components=True)[1]
    return out

  out = _jit_dict(run)
  for name in INT_LOSSES:
    for b in range(2):
      np.testing.assert_allclose(out[name][b], out[name, "sliced"][b], rtol=1e-6, atol=1e-7,
                                 err_msg=name)
    assert np.all(np.isfinite(out[name, "grad"])), name
    np.testing.assert_array_equal(out[name, "grad"][~keep], 0.0, err_msg=name)
  for name in PER_CLASS_LOSSES:
    np.testing.assert_allclose(out[name, "batch"], out[name, "batch_sliced"], rtol=1e-6,
                               atol=1e-7, err_msg=name)
  np.testing.assert_allclose(out["ce_dice"]["dice"], np.sum(out["dice_loss", "sliced"]),
                             rtol=1e-6)


# --------------------------------------------------------------------------- masks


def test_per_class_where_with_softmax_equals_slicing_per_class():
  x = _logits(4, (3, 10, C))
  y = _labels(4, (3, 10))
  where = np.array([[True, False, True], [False, False, False], [True, True, False]])
  x_nan = x.copy()
  x_nan[1] = np.nan  # a fully masked image: its NaN logits are harmless

  def run():
    out = {}
    for name, fn in PER_CLASS_LOSSES.items():
      out[name] = (
          fn(x, y, reduction="none"),
          fn(x_nan, y, where=where, reduction="none"),
          fn(x_nan, y, where=where, reduction="sum"),
          jax.grad(lambda v, f=fn: f(v, y, where=where, reduction="sum"))(x_nan),
          jax.grad(lambda v, f=fn: jnp.sum(jnp.where(where, f(v, y, reduction="none"), 0)))(x),
      )
    return out

  for name, (full, masked, total, grad, want_grad) in _jit_dict(run).items():
    np.testing.assert_allclose(masked[where], full[where], rtol=1e-6, err_msg=name)
    np.testing.assert_array_equal(masked[~where], 0.0, err_msg=name)
    np.testing.assert_allclose(total, np.sum(full[where]), rtol=1e-6, err_msg=name)
    np.testing.assert_array_equal(grad[1], 0.0, err_msg=name)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("batch", [3, 4], ids=["B==C", "B!=C"])
@pytest.mark.parametrize("composition", ["bce", "ce"])
def test_per_image_mask_with_batch_level_dice_equals_slicing_images(batch, composition):
  x = _logits(5, (batch, 4, 4, C))
  ids = _labels(5, (batch, 4, 4))
  if composition == "bce":
    y = (ids[..., None] == np.arange(C)).astype(np.float32)
    fn = functools.partial(jaxloss.sigmoid_bce_dice_loss, pos_weight=np.array([1.0, 2.0, 0.5]))
  else:
    y = ids
    fn = jaxloss.softmax_ce_dice_loss
  fn = functools.partial(fn, class_weights=np.array([0.5, 2.0, 1.0]), reduce_axes=(0, 1, 2),
                         return_components=True)
  mask = np.ones(batch, bool)
  mask[1] = False
  x_nan, y_nan = x.copy(), y.copy()
  x_nan[1] = np.nan
  if composition == "bce":
    y_nan[1] = np.nan
  w = np.ones(batch, np.float32)
  w[0], w[1] = 2.0, 0.0
  rep = np.array([0, 0] + list(range(2, batch)))
  none = np.zeros(batch, bool)

  def run():
    out = {}
    for reduction in SCALAR_REDUCTIONS:
      out[reduction] = (fn(x_nan, y_nan, where=mask, reduction=reduction),
                        fn(x[mask], y[mask], reduction=reduction))
    out["grad"] = (jax.grad(lambda v: fn(v, y_nan, where=mask)[0])(x_nan),
                   jax.grad(lambda v: fn(v, y[mask])[0])(x[mask]))
    # Per-image weights of a batch-level Dice: an image of weight w counts w times.
    out["weights"] = (fn(x, y, weights=w, reduction="weighted_mean")[0],
                      fn(x[rep], y[rep], reduction="weighted_mean")[0])
    # All images masked: 0 with zero gradient, whatever `smooth`.
    for smooth in (0.0, 1e-5):
      out["none", smooth] = jax.value_and_grad(
          lambda v, s=smooth: fn(v, y, where=none, smooth=s)[0])(x)
    return out

  out = _jit_dict(run)
  for reduction in SCALAR_REDUCTIONS:
    (total, parts), (want_total, want_parts) = out[reduction]
    np.testing.assert_allclose(total, want_total, rtol=1e-6, err_msg=reduction)
    for k in parts:
      np.testing.assert_allclose(parts[k], want_parts[k], rtol=1e-6, err_msg=reduction)
  grad, want = out["grad"]
  np.testing.assert_array_equal(grad[1], 0.0)
  np.testing.assert_allclose(grad[mask], want, rtol=1e-5, atol=1e-8)
  np.testing.assert_allclose(*out["weights"], rtol=1e-6)
  for smooth in (0.0, 1e-5):
    value, grad = out["none", smooth]
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, 0.0)


def test_per_image_options_of_a_composition_must_be_scalar_or_per_image():
  x = _logits(6, (2, 4, C))
  y = (_labels(6, (2, 4))[..., None] == np.arange(C)).astype(np.float32)
  with pytest.raises(ValueError, match="`weights`"):
    jaxloss.sigmoid_bce_dice_loss(x, y, weights=np.ones((2, 4)))
  with pytest.raises(ValueError, match="`where`"):
    jaxloss.softmax_ce_dice_loss(x, _labels(6, (2, 4)), where=np.ones(3, bool))


# --------------------------------------------------------------------------- options


def _all_losses():
  x = _logits(7, (2, 4, C))
  ids = _labels(7, (2, 4))
  multi = (ids[..., None] == np.arange(C)).astype(np.float32)
  return {
      **{k: (fn, x, ids) for k, fn in INT_LOSSES.items()},
      "sigmoid_bce_dice_loss": (jaxloss.sigmoid_bce_dice_loss, x, multi),
      "softmax_ce_dice_loss": (jaxloss.softmax_ce_dice_loss, x, ids),
  }


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), np.array([1e-5, 1e-5])],
                         ids=["negative", "nan", "inf", "array"])
def test_invalid_smooth_is_refused_naming_the_argument(bad):
  for name, (fn, x, y) in _all_losses().items():
    with pytest.raises(ValueError, match="`smooth`"):
      fn(x, y, smooth=bad)
    assert np.isfinite(fn(x, y, smooth=0.0)), name


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), np.array([0.5, 0.5])],
                         ids=["negative", "nan", "inf", "array"])
def test_invalid_part_and_tversky_weights_are_refused_naming_the_argument(bad):
  losses = _all_losses()
  fn, x, y = losses["tversky_loss"]
  for arg in ("alpha", "beta", "gamma"):
    with pytest.raises(ValueError, match=f"`{arg}`"):
      fn(x, y, **{arg: bad})
  with pytest.raises(ValueError, match="`gamma`"):
    fn(x, y, gamma=0.0)
  for name, args in (("sigmoid_bce_dice_loss", ("bce_weight", "dice_weight")),
                     ("softmax_ce_dice_loss", ("ce_weight", "dice_weight"))):
    fn, x, y = losses[name]
    for arg in args:
      with pytest.raises(ValueError, match=f"`{arg}`"):
        fn(x, y, **{arg: bad})


def test_traced_options_are_accepted_under_jit():
  losses = _all_losses()
  fn, x, y = losses["tversky_loss"]
  f = jax.jit(lambda a, g, s: fn(x, y, alpha=a, gamma=g, smooth=s))
  np.testing.assert_allclose(f(0.7, 1.5, 1e-3), fn(x, y, alpha=0.7, gamma=1.5, smooth=1e-3),
                             rtol=1e-6)
  fn, x, y = losses["sigmoid_bce_dice_loss"]
  f = jax.jit(lambda w, s: fn(x, y, dice_weight=w, smooth=s))
  np.testing.assert_allclose(f(0.5, 0.1), fn(x, y, dice_weight=0.5, smooth=0.1), rtol=1e-6)
  # d/d(smooth) of the fused kernel is its hand-written derivative.
  g = jax.grad(lambda s: fn(x, y, smooth=s))(0.1)
  eps = 1e-3
  fd = (fn(x, y, smooth=0.1 + eps) - fn(x, y, smooth=0.1 - eps)) / (2 * eps)
  np.testing.assert_allclose(g, fd, rtol=1e-2)


# --------------------------------------------------------------------------- sizes


def test_empty_batch_gives_zero_with_zero_gradient():
  def run():
    out = {}
    for name, (fn, x, y) in _all_losses().items():
      x0, y0 = x[:0], y[:0]
      for axes in (None, (0, 1)):
        # [B] weights are per image for the compositions and per-image losses.
        per_image = axes is None or name not in INT_LOSSES
        for reduction in SCALAR_REDUCTIONS:
          kw = {"reduce_axes": axes, "reduction": reduction, "smooth": 0.0,
                "weights": np.ones(0, np.float32) if per_image else None}
          out[name, axes, reduction] = jax.value_and_grad(
              lambda v, f=fn, t=y0, kw=kw: f(v, t, **kw))(x0)
      if name in INT_LOSSES:
        out[name, "none"] = fn(x0, y0, reduction="none")
    return out

  for key, value in _jit_dict(run).items():
    if key[-1] == "none":
      assert value.size == 0, key
    else:
      assert float(value[0]) == 0.0 and value[1].shape[0] == 0, key


def test_zero_classes_raise_naming_the_class_axis():
  for name, (fn, x, y) in _all_losses().items():
    x0 = x[..., :0]
    y0 = y[..., :0] if y.shape == x.shape else y
    with pytest.raises(ValueError, match="class axis"):
      fn(x0, y0)
    del name


def test_single_pixel_images_equal_the_formula():
  x = _logits(8, (3, 1, C))
  y = _labels(8, (3, 1))
  p = np.asarray(jax.nn.softmax(x.astype(np.float64), -1))
  t = np.eye(C)[y]
  s = 1e-3
  want = 1 - (2 * (p * t)[:, 0] + s) / (p[:, 0] + t[:, 0] + s)
  got = jaxloss.dice_loss(x, y, activation="softmax", smooth=s, reduction="none")
  np.testing.assert_allclose(got, want, rtol=1e-5)
  def run():
    out = {}
    for name, (fn, _, _) in _all_losses().items():
      yy = y if name != "sigmoid_bce_dice_loss" else t.astype(np.float32)
      out[name] = jax.value_and_grad(lambda v, f=fn, yy=yy: f(v, yy))(x)
    return out

  for name, (value, grad) in _jit_dict(run).items():
    assert np.isfinite(value) and np.all(np.isfinite(grad)), name


def test_single_channel_refuses_include_background_false_and_softmax():
  x = _logits(9, (2, 5, 1))
  y = np.zeros((2, 5), np.int32)
  for name in ("dice_loss", "jaccard_loss", "tversky_loss", "generalized_dice_loss"):
    fn = getattr(jaxloss, name)
    with pytest.raises(ValueError, match="`include_background`=False.*no background"):
      fn(x, y, activation="sigmoid", include_background=False)
    with pytest.raises(ValueError, match="`activation`='softmax'.*activation='sigmoid'"):
      fn(x, y, activation="softmax")
    assert np.isfinite(fn(x, y, activation="sigmoid")), name
  with pytest.raises(ValueError, match="single channel"):
    jaxloss.softmax_ce_dice_loss(x, y)
  value, grad = jax.value_and_grad(
      lambda v: jaxloss.sigmoid_bce_dice_loss(v, np.ones_like(x)))(x)
  assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_generalized_dice_with_one_channel_equals_the_formula():
  x = _logits(10, (2, 6, 1))
  t = (np.random.default_rng(10).uniform(size=x.shape) < 0.5).astype(np.float64)
  p = 1 / (1 + np.exp(-x.astype(np.float64)))
  s = 1e-3
  inter, denom, mass = (p * t).sum(1)[:, 0], (p + t).sum(1)[:, 0], t.sum(1)[:, 0]
  w = 1 / mass**2
  want = 1 - (2 * w * inter + s) / (w * denom + s)
  got = jaxloss.generalized_dice_loss(x, t.astype(np.float32), activation="sigmoid", smooth=s,
                                      reduction="none")
  np.testing.assert_allclose(got, want, rtol=1e-5)


# --------------------------------------------------------------------------- checked


def test_checked_reports_nan_in_every_array_input():
  x = _logits(11, (2, 4, C))
  ids = _labels(11, (2, 4))
  onehot = np.eye(C, dtype=np.float32)[ids]
  bad = onehot.copy()
  bad[0, 0, 0] = np.nan
  dice = jaxloss.checked(functools.partial(jaxloss.dice_loss, activation="softmax"))
  with pytest.raises(Exception, match="`labels` contains NaN"):
    dice(x, bad)
  with pytest.raises(Exception, match="`predictions` contains NaN"):
    dice(np.where(ids[..., None] == 0, np.nan, x).astype(np.float32), onehot)
  with pytest.raises(Exception, match="`class_weights` contains NaN"):
    dice(x, onehot, class_weights=np.array([1.0, np.nan, 1.0]))
  dice(x, bad, where=np.array([False, True]))  # masked NaN is not reported
  bce = jaxloss.checked(jaxloss.sigmoid_bce_dice_loss)
  with pytest.raises(Exception, match="`labels` contains NaN"):
    bce(x, bad)
  with pytest.raises(Exception, match="`logits` contains NaN"):
    bce(np.full_like(x, np.nan), onehot)
  with pytest.raises(Exception, match="`weights` contains NaN"):
    bce(x, onehot, weights=np.array([1.0, np.nan]))
  with pytest.raises(Exception, match="`pos_weight` contains NaN"):
    bce(x, onehot, pos_weight=np.array([1.0, np.nan, 1.0]))
  bce(x, bad, where=np.array([False, True]))
  bce(x, bad, where=np.array([False, True]), reduce_axes=(0, 1))


# --------------------------------------------------------------------------- fused BCE + Dice


def _bce_reference(x: np.ndarray, y: float) -> tuple[np.ndarray, np.ndarray]:
  """float64 per-element BCE and its derivative, from the formula."""
  sp_pos = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
  sp_neg = np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x)))
  sig = np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(
      -np.abs(x))))
  sig_neg = np.where(x >= 0, np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))),
                     1 / (1 + np.exp(-np.abs(x))))
  return y * sp_neg + (1 - y) * sp_pos, -y * sig_neg + (1 - y) * sig


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-6), (np.float64, 1e-12)],
                         ids=["f32", "f64"])
def test_fused_bce_part_is_accurate_per_element(dtype, rtol):
  xs = np.concatenate([np.linspace(-100, 100, 801), [-15.0, 8.0, 12.0, 15.0, 0.0]])
  xs = xs.astype(dtype)

  def one(v, y):  # one element: B = 1, one pixel, one class
    return jaxloss.sigmoid_bce_dice_loss(v.reshape(1, 1, 1), y.reshape(1, 1, 1),
                                         dice_weight=0.0, reduction="sum")

  value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(one)))
  with jax.enable_x64(dtype == np.float64):
    for y in (0.0, 0.3, 1.0):
      value, grad = value_and_grad(jnp.asarray(xs), jnp.full(xs.shape, y, dtype))
      want_v, want_g = _bce_reference(xs.astype(np.float64), y)
      # XLA:CPU flushes subnormal results to zero: below the smallest normal, absolute.
      tiny = np.finfo(dtype).tiny
      np.testing.assert_allclose(value, want_v, rtol=rtol, atol=tiny, err_msg=f"value y={y}")
      np.testing.assert_allclose(grad, want_g, rtol=rtol, atol=tiny, err_msg=f"grad y={y}")


def test_fused_bce_dice_is_finite_at_the_float32_range_limit():
  x = np.array([[[3e38, -3e38, 0.0], [-3e38, 3e38, 1.0]]], np.float32)
  y = np.array([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]], np.float32)
  for axes in (None, (0, 1)):
    value, grads = jax.value_and_grad(
        lambda v, w, a=axes: jaxloss.sigmoid_bce_dice_loss(v, w, reduce_axes=a),
        argnums=(0, 1))(x, y)
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)
  # Confidently wrong: the mean, 4 · 3e38 / 6 + ..., is representable.
  value = jaxloss.sigmoid_bce_dice_loss(x, 1 - y, dice_weight=0.0)
  np.testing.assert_allclose(value, (4 * 3e38 + np.log(2) + np.log1p(np.exp(-1.0))) / 6,
                             rtol=1e-6)


def test_compositions_are_reverse_mode_only_with_working_second_derivatives():
  x = _logits(12, (2, 3, C)).astype(np.float64)
  y = np.eye(C)[_labels(12, (2, 3))]
  with jax.enable_x64(True):
    def fused(v):
      return jaxloss.sigmoid_bce_dice_loss(v, y, pos_weight=np.array([1.0, 2.0, 0.5]),
                                           smooth=0.1)

    def parts(v):
      bce = jaxloss.sigmoid_binary_cross_entropy(v, y, pos_weight=np.array([1.0, 2.0, 0.5]))
      return bce + jaxloss.dice_loss(v, y, activation="sigmoid", smooth=0.1)

    def ce_dice(v):
      return jaxloss.softmax_ce_dice_loss(v, y, smooth=0.1)

    def ce_dice_parts(v):
      return (jaxloss.softmax_cross_entropy(v, y)
              + jaxloss.dice_loss(v, y, activation="softmax", smooth=0.1))

    for f, reference in ((fused, parts), (ce_dice, ce_dice_parts)):
      with pytest.raises(TypeError):
        jax.jvp(f, (x,), (np.ones_like(x),))
      with pytest.raises(TypeError):
        jax.jacfwd(f)(x)
      # Reverse mode first works: jacrev of jacrev, and hessian (forward-over-reverse).
      want = jax.jit(jax.hessian(reference))(x)
      np.testing.assert_allclose(jax.jit(jax.jacrev(jax.jacrev(f)))(x), want, rtol=1e-9,
                                 atol=1e-12)
      np.testing.assert_allclose(jax.jit(jax.hessian(f))(x), want, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- peer mappings


def test_dice_and_tversky_equal_optax_with_the_documented_mapping():
  import optax

  x = _logits(13, (2, 4, 4, C))
  t = np.eye(C, dtype=np.float32)[_labels(13, (2, 4, 4))]
  s = 0.7
  ours = jaxloss.dice_loss(x, t, activation="softmax", smooth=2 * s, reduction="none")
  np.testing.assert_allclose(jnp.mean(ours, -1), optax.losses.dice_loss(x, t, smooth=s),
                             rtol=1e-6)
  for a, b in ((0.5, 0.5), (0.7, 0.3)):
    ours = jaxloss.tversky_loss(x, t, activation="softmax", alpha=a, beta=b, smooth=s,
                                reduction="none")
    np.testing.assert_allclose(jnp.mean(ours, -1),
                               optax.losses.dice_loss(x, t, smooth=s, alpha=a, beta=b),
                               rtol=1e-6)
