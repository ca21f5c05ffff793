"""Reliability of the focal, sigmoid and semi-supervised losses (issue 12).

Float32 range limits (±3e38), class ids of every integer dtype, invalid labels
with more than 32 classes, option checks, NaN under the mask, empty batches,
``jaxloss.checked`` on every array input, the MONAI mappings and the
reverse-mode-only policy of the integer-label focal kernel.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

BIG = np.float32(3e38)


def _finite(tree) -> bool:
  return all(bool(np.all(np.isfinite(np.asarray(a)))) for a in jax.tree.leaves(tree))


# ------------------------------------------------------------------ ±3e38 (issue 12 #10)


def test_softmax_focal_one_hot_and_integer_labels_are_finite_at_float32_extremes():
  x = np.array([[BIG, -BIG, 0.0], [-BIG, BIG, BIG], [0.0, -BIG, -BIG], [BIG, BIG, BIG]],
               np.float32)
  y = np.array([0, 1, 0, 2], np.int32)  # every label at a maximal logit
  alpha = np.array([0.25, 0.5, 1.0], np.float32)
  want = np.array([0.0, 0.5 * 0.25 * np.log(2), 0.0, (2 / 3) ** 2 * np.log(3)])

  @jax.jit
  def value_and_grad(x, labels):
    f = functools.partial(jaxloss.softmax_focal_loss, labels=labels, gamma=2.0, alpha=alpha,
                          reduction="none")
    value, vjp = jax.vjp(f, x)
    return value, vjp(jnp.ones_like(value))[0]

  for labels in (y, np.eye(3, dtype=np.float32)[y]):
    value, grad = value_and_grad(x, labels)
    np.testing.assert_allclose(value, want, rtol=1e-6, atol=1e-30)
    assert _finite(grad), labels.dtype


def test_sigmoid_focal_and_bce_with_pos_weight_are_finite_at_float32_extremes():
  x = np.array([BIG, -BIG, BIG, -BIG, -1e38, BIG, 0.0], np.float32)
  y = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.5, 1.0], np.float32)
  pw = np.full(7, 2.0, np.float32)
  bce = functools.partial(jaxloss.sigmoid_binary_cross_entropy, labels=y, pos_weight=pw,
                          axis=0, reduction="none")
  want = [0.0, 0.0, 3e38, 0.0, 2e38, 1.5e38, 2 * np.log(2)]
  np.testing.assert_allclose(bce(x), want, rtol=1e-6)
  g = jax.grad(lambda x: bce(x).sum())(x)
  np.testing.assert_allclose(g, [0.0, 0.0, 1.0, 0.0, -2.0, 0.5, -1.0], rtol=1e-6)
  focal = functools.partial(jaxloss.sigmoid_focal_loss, labels=y, gamma=2.0, alpha=0.25,
                            reduction="none")
  want = [0.0, 0.0, 0.75 * 3e38, 0.0, 0.25 * 1e38, 0.5 * 0.25 * 1.5e38,
          0.25 * 0.25 * np.log(2)]
  np.testing.assert_allclose(focal(x), want, rtol=1e-6)
  assert _finite(jax.grad(lambda x: focal(x).sum())(x))


def test_entropy_and_kl_consistency_are_finite_at_float32_extremes():
  x = np.array([[BIG, -BIG, 0.0], [BIG, BIG, -BIG], [-BIG, -BIG, -BIG]], np.float32)
  h = functools.partial(jaxloss.entropy_minimization_loss, reduction="none")
  value, g = jax.jit(jax.value_and_grad(lambda x: h(x).sum(), has_aux=False))(x)
  np.testing.assert_allclose(h(x), [0.0, np.log(2), np.log(3)], rtol=1e-6, atol=1e-30)
  np.testing.assert_allclose(g, 0.0, atol=1e-30)
  b = np.array([[BIG, 0.0, -BIG], [BIG, BIG, 0.0], [0.0, 0.0, 0.0]], np.float32)
  a = np.zeros((3, 3), np.float32)
  kl = functools.partial(jaxloss.consistency_loss, temperature=0.5, stop_gradient=False,
                         reduction="none")
  np.testing.assert_allclose(kl(a, b), [np.log(3), np.log(3) - np.log(2), 0.0], rtol=1e-6,
                             atol=1e-30)
  np.testing.assert_allclose(kl(x, x), 0.0, atol=1e-30)
  kl_value_and_grads = jax.jit(jax.value_and_grad(lambda a, b: kl(a, b)[:2].sum(), (0, 1)))
  for args in ((a, b), (x, x), (x, b)):
    value, grads = kl_value_and_grads(*args)
    assert np.isfinite(value) and _finite(grads)
  # The soft pseudo-label targets softmax(t / T) too: t / T itself would overflow.
  loss, frac = jaxloss.pseudo_label_cross_entropy(a, b, hard=False, temperature=0.5,
                                                  threshold=0.5, reduction="sum")
  np.testing.assert_allclose(loss, 2 * np.log(3), rtol=1e-6)
  np.testing.assert_allclose(frac, 2 / 3, rtol=1e-6)


# ------------------------------------------------------------------ labels (issue 12 #1, #2)


@pytest.mark.parametrize("classes", [5, 40])
def test_negative_and_too_large_focal_labels_are_nan_for_any_class_count(classes):
  x = np.zeros((3, classes), np.float32)
  y = np.array([-1, 1, classes], np.int32)
  alpha = np.linspace(0.1, 1.0, classes).astype(np.float32)
  for a in (None, alpha, 0.5):
    got = jaxloss.softmax_focal_loss(x, y, alpha=a, reduction="none")
    assert np.isnan(got[0]) and np.isfinite(got[1]) and np.isnan(got[2]), (a, got)
    assert np.isnan(jaxloss.softmax_focal_loss(x, y, alpha=a))


LABEL_DTYPES = [np.bool_, np.uint8, np.int8, np.int16, np.uint16, np.int32]


@pytest.mark.parametrize("dtype", LABEL_DTYPES)
def test_every_integer_label_dtype_gives_the_int32_focal_loss(dtype):
  rng = np.random.default_rng(0)
  x = (2 * rng.normal(size=(6, 2))).astype(np.float32)
  y = rng.integers(0, 2, size=6)
  alpha = np.array([0.3, 0.7], np.float32)

  def f(x, labels):
    return jaxloss.softmax_focal_loss(x, labels, alpha=alpha, reduction="sum")

  want = jax.value_and_grad(f)(x, y.astype(np.int32))
  got = jax.value_and_grad(f)(x, y.astype(dtype))
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("dtype,ignore", [(np.uint8, 255), (np.int8, -1), (np.int16, -100),
                                          (np.uint16, 65535)])
def test_narrow_labels_with_ignore_index_equal_int32_labels(dtype, ignore):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(5, 3)).astype(np.float32)
  y = np.array([0, 2, ignore, 1, ignore]).astype(dtype)
  wide = y.astype(np.int64).astype(np.int32)
  got = jaxloss.softmax_focal_loss(x, y, ignore_index=ignore, reduction="none")
  np.testing.assert_array_equal(got, jaxloss.softmax_focal_loss(x, wide, ignore_index=ignore,
                                                                reduction="none"))
  np.testing.assert_array_equal(jaxloss.labeled_mask(y, ignore_index=ignore),
                                [True, True, False, True, False])


def test_labeled_mask_compares_narrow_labels_by_value_without_overflow():
  y8 = np.array([3, 255, 0], np.uint8)
  np.testing.assert_array_equal(jaxloss.labeled_mask(y8, ignore_index=-1), [True] * 3)
  np.testing.assert_array_equal(jaxloss.labeled_mask(np.array([-1, 2], np.int8),
                                                     ignore_index=255), [True, True])
  np.testing.assert_array_equal(jaxloss.labeled_mask(y8, ignore_index=255), [True, False, True])
  with pytest.raises(TypeError, match="`ignore_index` must be None or a Python int"):
    jaxloss.labeled_mask(y8, ignore_index=2.5)


# ------------------------------------------------------------------ options (#8, #12)


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
@pytest.mark.parametrize("gamma,match", [(np.nan, "`gamma` must be a number; got NaN"),
                                         (np.inf, "`gamma` must be finite"),
                                         (-1.0, "`gamma` must be >= 0"),
                                         (np.array([1.0, 2.0]), "`gamma` must be a scalar")])
def test_focal_gamma_must_be_a_finite_non_negative_scalar(loss, gamma, match):
  x = np.zeros((2, 3), np.float32)
  y = np.zeros((2, 3), np.float32) if loss == "sigmoid" else np.zeros(2, np.int32)
  fn = jaxloss.sigmoid_focal_loss if loss == "sigmoid" else jaxloss.softmax_focal_loss
  with pytest.raises(ValueError, match=match):
    fn(x, y, gamma=gamma)


def test_traced_focal_gamma_is_a_type_error_naming_gamma():
  x, y = np.zeros((2, 3), np.float32), np.zeros(2, np.int32)
  with pytest.raises(TypeError, match="`gamma` must be a concrete Python number"):
    jax.jit(lambda g: jaxloss.softmax_focal_loss(x, y, gamma=g))(2.0)


@pytest.mark.parametrize("alpha,match", [(np.array([0.25, 0.5, 0.75]), "`alpha` must be a scalar"),
                                         (np.nan, "`alpha` must be a number; got NaN"),
                                         (1.5, r"`alpha` must lie in \[0, 1\]"),
                                         (-0.1, r"`alpha` must lie in \[0, 1\]")])
def test_sigmoid_focal_alpha_must_be_a_scalar_in_unit_interval(alpha, match):
  x = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match=match):
    jaxloss.sigmoid_focal_loss(x, x, alpha=alpha)


def test_sigmoid_focal_alpha_may_be_traced():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(4, 3)).astype(np.float32)
  y = (rng.uniform(size=(4, 3)) < 0.5).astype(np.float32)
  f = jax.jit(lambda a: jaxloss.sigmoid_focal_loss(x, y, alpha=a))
  np.testing.assert_allclose(f(jnp.float32(0.4)), jaxloss.sigmoid_focal_loss(x, y, alpha=0.4),
                             rtol=1e-6)


@pytest.mark.parametrize("alpha,match", [
    (-0.5, "`alpha` must be non-negative"),
    (np.nan, "`alpha` must be finite"),
    (np.array([0.2, -0.1, 1.0]), "`alpha` must be non-negative"),
    (np.array([0.2, np.nan, 1.0]), "`alpha` must be finite"),
    (np.ones((1, 3)), r"`alpha` has shape \(1, 3\)"),
])
def test_softmax_focal_negative_or_nan_alpha_is_refused(alpha, match):
  x, y = np.zeros((2, 3), np.float32), np.zeros(2, np.int32)
  with pytest.raises(ValueError, match=match):
    jaxloss.softmax_focal_loss(x, y, alpha=alpha)


def test_checked_reports_a_traced_negative_focal_alpha():
  x, y = np.zeros((2, 3), np.float32), np.zeros(2, np.int32)
  f = jaxloss.checked(jax.jit(lambda a: jaxloss.softmax_focal_loss(x, y, alpha=a)))
  with pytest.raises(ValueError, match="`alpha` must be non-negative"):
    f(np.array([0.2, -0.1, 1.0], np.float32))
  with pytest.raises(ValueError, match="`alpha` contains NaN"):
    f(np.array([0.2, np.nan, 1.0], np.float32))
  np.testing.assert_allclose(f(np.array([0.2, 0.1, 1.0], np.float32)),
                             0.2 * np.log(3) * (2 / 3) ** 2, rtol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"threshold": np.nan}, "`threshold` must be a number"),
    ({"threshold": -0.1}, r"`threshold` must lie in \[0, 1\]"),
    ({"threshold": np.array([0.5, 0.9])}, "`threshold` must be a scalar"),
    ({"temperature": np.inf}, "`temperature` must be finite"),
    ({"temperature": np.nan}, "`temperature` must be a number"),
    ({"temperature": np.array([1.0, 2.0])}, "`temperature` must be a scalar"),
])
def test_pseudo_label_scalar_options_are_checked(kwargs, match):
  x = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match=match):
    jaxloss.pseudo_label_cross_entropy(x, x, hard=False, **kwargs)


@pytest.mark.parametrize("temperature,match", [(0.0, "`temperature` must be > 0"),
                                               (np.nan, "`temperature` must be a number"),
                                               (np.ones(3), "`temperature` must be a scalar")])
def test_consistency_temperature_is_checked(temperature, match):
  x = np.zeros((2, 3), np.float32)
  with pytest.raises(ValueError, match=match):
    jaxloss.consistency_loss(x, x, temperature=temperature)


@pytest.mark.parametrize("eps,match", [
    (np.nan, "`label_smoothing` must be a number"),
    (1.5, r"`label_smoothing` must lie in \[0, 1\]"),
    (np.array([0.1, 0.2]), "`label_smoothing` must be a scalar"),
])
def test_bce_label_smoothing_is_checked(eps, match):
  x = np.zeros((2, 2), np.float32)
  with pytest.raises(ValueError, match=match):
    jaxloss.sigmoid_binary_cross_entropy(x, x, label_smoothing=eps)


def test_multi_head_loss_weights_are_checked():
  losses = {"a": np.ones(3, np.float32)}
  for lam, match in ((np.nan, "must be a number"), (-1.0, "must be >= 0"),
                     (np.inf, "must be finite")):
    with pytest.raises(ValueError, match=r"`loss_weights\['a'\]` " + match):
      jaxloss.multi_head_loss(losses, loss_weights={"a": lam})


# ------------------------------------------------------------------ NaN under the mask (#9)


def _masked_cases():
  """name -> (fn(*differentiable args, weights, where, reduction), differentiable args)."""
  rng = np.random.default_rng(3)
  b, c = 4, 3
  logits = (2 * rng.normal(size=(b, 2, c))).astype(np.float32)
  other = (2 * rng.normal(size=(b, 2, c))).astype(np.float32)
  multi = (rng.uniform(size=(b, 2, c)) < 0.5).astype(np.float32)
  prob = rng.dirichlet(np.ones(c), size=(b, 2)).astype(np.float32)
  ints = rng.integers(0, c, size=(b, 2)).astype(np.int32)
  pw = np.array([1.0, 2.0, 0.5], np.float32)
  alpha = np.array([0.25, 0.5, 1.0], np.float32)
  kw = lambda w, m, r: {"weights": w, "where": m, "reduction": r}  # noqa: E731
  return {
      "bce": (lambda x, y, w, m, r: jaxloss.sigmoid_binary_cross_entropy(
          x, y, pos_weight=pw, label_smoothing=0.1, **kw(w, m, r)), (logits, multi)),
      "sigmoid_focal": (lambda x, y, w, m, r: jaxloss.sigmoid_focal_loss(
          x, y, **kw(w, m, r)), (logits, prob)),
      "softmax_focal[prob]": (lambda x, y, w, m, r: jaxloss.softmax_focal_loss(
          x, y, alpha=alpha, **kw(w, m, r)), (logits, prob)),
      "softmax_focal[int]": (lambda x, w, m, r: jaxloss.softmax_focal_loss(
          x, ints, alpha=alpha, **kw(w, m, r)), (logits,)),
      "pseudo_label[soft]": (lambda x, w, m, r: jaxloss.pseudo_label_cross_entropy(
          x, other, hard=False, temperature=0.5, threshold=0.3, **kw(w, m, r))[0], (logits,)),
      "entropy": (lambda x, w, m, r: jaxloss.entropy_minimization_loss(x, **kw(w, m, r)),
                  (logits,)),
      "consistency[kl]": (lambda a, b, w, m, r: jaxloss.consistency_loss(
          a, b, temperature=0.7, stop_gradient=False, **kw(w, m, r)), (logits, other)),
      "consistency[mse]": (lambda a, b, w, m, r: jaxloss.consistency_loss(
          a, b, kind="mse", stop_gradient=False, **kw(w, m, r)), (logits, other)),
  }


@pytest.mark.parametrize("name", list(_masked_cases()))
@pytest.mark.parametrize("reduction", ["weighted_mean"])
def test_nan_inputs_and_weights_under_the_mask_have_zero_value_and_gradient(name, reduction):
  fn, args = _masked_cases()[name]
  rng = np.random.default_rng(4)
  where = np.array([[True, False], [True, True], [False, False], [True, False]])
  weights = rng.uniform(0.5, 2.0, size=where.shape).astype(np.float32)
  poisoned = [np.where(where[..., None], a, np.nan).astype(np.float32) for a in args]
  bad_w = np.where(where, weights, np.nan).astype(np.float32)
  n = len(args)
  total = jax.jit(jax.value_and_grad(lambda *a: fn(*a[:n], a[n], where, reduction),
                                     tuple(range(n + 1))))
  clean, clean_g = total(*args, weights)
  value, grads = total(*poisoned, bad_w)
  assert np.isfinite(value)
  np.testing.assert_allclose(value, clean, rtol=1e-6)
  for g, cg in zip(grads, clean_g, strict=True):
    assert _finite(g)
    mask = np.broadcast_to(where.reshape(where.shape + (1,) * (g.ndim - where.ndim)), g.shape)
    np.testing.assert_array_equal(np.asarray(g)[~mask], 0.0)
    np.testing.assert_allclose(np.asarray(g)[mask], np.asarray(cg)[mask], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("reduction", ["sum", "mean", "weighted_mean", "sum_by_nonzero_weights"])
def test_multi_head_nan_losses_and_weights_under_the_mask_are_harmless(reduction):
  rng = np.random.default_rng(5)
  losses = {"cls": rng.uniform(0, 3, size=6).astype(np.float32),
            "rec": rng.uniform(0, 1, size=(6, 4)).astype(np.float32)}
  weights = {"cls": rng.uniform(0.5, 2, size=6).astype(np.float32),
             "rec": rng.uniform(0.5, 2, size=6).astype(np.float32)}
  wheres = {"cls": np.array([True, False, True, False, False, True]),
            "rec": np.array([True, True, False, True, True, True])}
  bad_l = {h: np.where(wheres[h].reshape(-1, *([1] * (l.ndim - 1))), l, np.nan).astype(l.dtype)
           for h, l in losses.items()}
  bad_w = {h: np.where(wheres[h], w, np.nan).astype(np.float32) for h, w in weights.items()}

  def total(ls, ws):
    return jaxloss.multi_head_loss(ls, weights=ws, wheres=wheres, loss_weights={"rec": 0.5},
                                   reduction=reduction)[0]

  clean, (cg_l, cg_w) = jax.value_and_grad(total, (0, 1))(losses, weights)
  value, (g_l, g_w) = jax.value_and_grad(total, (0, 1))(bad_l, bad_w)
  np.testing.assert_allclose(value, clean, rtol=1e-6)
  for h in losses:
    m = wheres[h]
    assert _finite(g_l[h]) and _finite(g_w[h])
    np.testing.assert_array_equal(g_l[h][~m], 0.0)
    np.testing.assert_array_equal(g_w[h][~m], 0.0)
    np.testing.assert_allclose(g_l[h][m], cg_l[h][m], rtol=1e-6)
    np.testing.assert_allclose(g_w[h][m], cg_w[h][m], rtol=1e-6)


# ------------------------------------------------------------------ sizes (#11)


def _empty_and_zero_class_calls():
  """name -> fn(batch, classes) calling the loss with weights and where."""
  def inputs(b, c):
    x = np.zeros((b, 2, c), np.float32)
    return x, np.ones((b,), np.float32), np.ones((b,), bool)

  def bce(b, c, r):
    x, w, m = inputs(b, c)
    return jaxloss.sigmoid_binary_cross_entropy(x, x, weights=w, where=m, reduction=r)

  def sfocal(b, c, r):
    x, w, m = inputs(b, c)
    return jaxloss.sigmoid_focal_loss(x, x, weights=w, where=m, reduction=r)

  def focal_int(b, c, r):
    x, w, m = inputs(b, c)
    return jaxloss.softmax_focal_loss(x, np.zeros((b, 2), np.int32), weights=w, where=m,
                                      reduction=r)

  def focal_prob(b, c, r):
    x, w, m = inputs(b, c)
    return jaxloss.softmax_focal_loss(x, x + 1 / max(c, 1), weights=w, where=m, reduction=r)

  def pseudo(b, c, r):
    x, w, m = inputs(b, c)
    return jaxloss.pseudo_label_cross_entropy(x, x, weights=w, where=m, reduction=r)[0]

  def entropy(b, c, r):
    x, w, m = inputs(b, c)
    return jaxloss.entropy_minimization_loss(x, weights=w, where=m, reduction=r)

  def consistency(b, c, r):
    x, w, m = inputs(b, c)
    return jaxloss.consistency_loss(x, x, weights=w, where=m, reduction=r)

  return {"bce": bce, "sigmoid_focal": sfocal, "softmax_focal[int]": focal_int,
          "softmax_focal[prob]": focal_prob, "pseudo_label": pseudo, "entropy": entropy,
          "consistency": consistency}


@pytest.mark.parametrize("name", list(_empty_and_zero_class_calls()))
@pytest.mark.parametrize("reduction", ["mean", "weighted_mean"])
def test_empty_batch_with_weights_and_where_is_zero(name, reduction):
  got = _empty_and_zero_class_calls()[name](0, 3, reduction)
  assert got.shape == () and float(got) == 0.0


@pytest.mark.parametrize("name", list(_empty_and_zero_class_calls()))
def test_zero_classes_raise_naming_the_class_axis(name):
  with pytest.raises(ValueError, match=r"class axis \(axis 2\) has size 0"):
    _empty_and_zero_class_calls()[name](2, 0, "mean")


def test_empty_batch_gradients_are_zero_and_multi_head_empty_head_is_zero():
  x = np.zeros((0, 4), np.float32)
  w = np.zeros((0,), np.float32)

  def f(x, w):
    return (jaxloss.softmax_focal_loss(x, np.zeros(0, np.int32), weights=w,
                                       reduction="weighted_mean")
            + jaxloss.sigmoid_focal_loss(x, x, weights=w, reduction="weighted_mean"))

  value, grads = jax.value_and_grad(f, (0, 1))(x, w)
  assert float(value) == 0.0 and grads[0].shape == (0, 4) and grads[1].shape == (0,)
  total, heads = jaxloss.multi_head_loss({"a": np.zeros(0, np.float32)},
                                         weights={"a": w}, wheres={"a": np.zeros(0, bool)},
                                         reduction="weighted_mean")
  assert float(total) == 0.0 and float(heads["a"]) == 0.0


# ------------------------------------------------------------------ checked (#13)


def _checked_calls():
  """(name of the poisoned argument, call(poison)) for every array input."""
  rng = np.random.default_rng(6)
  x = rng.normal(size=(3, 4)).astype(np.float32)
  y = (rng.uniform(size=(3, 4)) < 0.5).astype(np.float32)
  p = rng.dirichlet(np.ones(4), size=3).astype(np.float32)
  w = np.ones(3, np.float32)
  c4 = np.ones(4, np.float32)
  ints = np.array([0, 1, 3], np.int32)

  def nan(a):
    a = np.array(a, np.float32)
    a.reshape(-1)[0] = np.nan
    return a

  return [
      ("logits", lambda: jaxloss.sigmoid_binary_cross_entropy(nan(x), y)),
      ("labels", lambda: jaxloss.sigmoid_binary_cross_entropy(x, nan(y))),
      ("weights", lambda: jaxloss.sigmoid_binary_cross_entropy(x, y, weights=nan(w))),
      ("pos_weight", lambda: jaxloss.sigmoid_binary_cross_entropy(x, y, pos_weight=nan(c4))),
      ("class_weights",
       lambda: jaxloss.sigmoid_binary_cross_entropy(x, y, class_weights=nan(c4))),
      ("logits", lambda: jaxloss.sigmoid_focal_loss(nan(x), y)),
      ("labels", lambda: jaxloss.sigmoid_focal_loss(x, nan(y))),
      ("weights", lambda: jaxloss.sigmoid_focal_loss(x, y, weights=nan(w))),
      ("logits", lambda: jaxloss.softmax_focal_loss(nan(x), ints)),
      ("labels", lambda: jaxloss.softmax_focal_loss(x, nan(p))),
      ("weights", lambda: jaxloss.softmax_focal_loss(x, ints, weights=nan(w))),
      ("alpha", lambda: jaxloss.softmax_focal_loss(x, ints, alpha=nan(c4))),
      ("logits", lambda: jaxloss.pseudo_label_cross_entropy(nan(x), x)[0]),
      ("teacher_logits", lambda: jaxloss.pseudo_label_cross_entropy(x, nan(x))[0]),
      ("weights", lambda: jaxloss.pseudo_label_cross_entropy(x, x, weights=nan(w))[0]),
      ("logits", lambda: jaxloss.entropy_minimization_loss(nan(x))),
      ("weights", lambda: jaxloss.entropy_minimization_loss(x, weights=nan(w))),
      ("logits_a", lambda: jaxloss.consistency_loss(nan(x), x)),
      ("logits_b", lambda: jaxloss.consistency_loss(x, nan(x))),
      ("weights", lambda: jaxloss.consistency_loss(x, x, weights=nan(w))),
      ("losses['a']", lambda: jaxloss.multi_head_loss({"a": nan(x)})[0]),
      ("weights['a']", lambda: jaxloss.multi_head_loss({"a": x}, weights={"a": nan(w)})[0]),
  ]


@pytest.mark.parametrize("i", range(len(_checked_calls())))
def test_checked_reports_unmasked_nan_in_every_array_input(i):
  name, call = _checked_calls()[i]
  with pytest.raises(ValueError, match=r"`" + name.replace("[", r"\[").replace("]", r"\]")
                     + "` (contains NaN|does not sum to 1|must be non-negative|must be finite)"):
    jaxloss.checked(call)()


def test_checked_reports_a_traced_nan_loss_weight():
  f = jaxloss.checked(jax.jit(lambda lam: jaxloss.multi_head_loss(
      {"a": np.ones(2, np.float32)}, loss_weights={"a": lam})[0]))
  with pytest.raises(ValueError, match=r"`loss_weights\['a'\]` contains NaN"):
    f(jnp.float32(np.nan))


# ------------------------------------------------------------------ peers and AD policy


def _monai_softmax_focal(x, t, gamma, alpha, reduction):
  """MONAI 1.6.1 FocalLoss(use_softmax=True) transcribed to float64 NumPy ([B, C, *S])."""
  ls = x - np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)) - x.max(
      1, keepdims=True)
  loss = -((1 - np.exp(ls)) ** gamma) * ls * t
  if alpha is not None:
    fac = np.array([1 - alpha] + [alpha] * (t.shape[1] - 1))
    loss = fac.reshape([-1] + [1] * (t.ndim - 2)) * loss
  if reduction == "sum":  # MONAI averages over the spatial axes first
    return loss.mean(axis=tuple(range(2, t.ndim))).sum()
  return loss.mean() if reduction == "mean" else loss


def _monai_sigmoid_focal(x, t, gamma, alpha, reduction):
  """MONAI 1.6.1 FocalLoss(use_softmax=False) transcribed to float64 NumPy."""
  log_sigmoid = lambda v: -np.logaddexp(0, -v)  # noqa: E731
  loss = x - x * t - log_sigmoid(x)
  loss = np.exp(log_sigmoid(-x * (t * 2 - 1)) * gamma) * loss
  if alpha is not None:
    loss = (t * alpha + (1 - t) * (1 - alpha)) * loss
  if reduction == "sum":
    return loss.mean(axis=tuple(range(2, t.ndim))).sum()
  return loss.mean() if reduction == "mean" else loss


def test_softmax_focal_equals_monai_with_the_documented_sum_mapping():
  with jax.enable_x64(True):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 4, 5)) * 2  # [B, C, H, W]
    y = rng.integers(0, 3, size=(2, 4, 5))
    t = np.moveaxis(np.eye(3)[y], -1, 1)
    a = 0.25
    alpha = np.array([1 - a, a, a])
    hw, n, c = 4 * 5, 2 * 4 * 5, 3
    for labels in (y, t):
      ours = functools.partial(jaxloss.softmax_focal_loss, x, labels, axis=1, gamma=2.0,
                               alpha=alpha)
      np.testing.assert_allclose(ours(reduction="sum") / hw,
                                 _monai_softmax_focal(x, t, 2.0, a, "sum"), rtol=1e-12)
      np.testing.assert_allclose(ours(reduction="sum") / (n * c),
                                 _monai_softmax_focal(x, t, 2.0, a, "mean"), rtol=1e-12)
      np.testing.assert_allclose(ours(reduction="mean") / c,
                                 _monai_softmax_focal(x, t, 2.0, a, "mean"), rtol=1e-12)
      np.testing.assert_allclose(ours(reduction="none"),
                                 _monai_softmax_focal(x, t, 2.0, a, "none").sum(1), rtol=1e-12)
    # The MONAI "sum" is not ours: they differ by H·W = 20.
    assert abs(float(ours(reduction="sum")) / float(_monai_softmax_focal(x, t, 2.0, a, "sum"))
               - hw) < 1e-9


def test_sigmoid_focal_equals_monai_with_the_documented_sum_mapping():
  with jax.enable_x64(True):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 3, 4, 5)) * 2
    t = (rng.uniform(size=(2, 3, 4, 5)) < 0.4).astype(np.float64)
    for a in (0.25, None):
      ours = functools.partial(jaxloss.sigmoid_focal_loss, x, t, axis=1, gamma=2.0, alpha=a)
      np.testing.assert_allclose(ours(reduction="sum") / 20,
                                 _monai_sigmoid_focal(x, t, 2.0, a, "sum"), rtol=1e-12)
      np.testing.assert_allclose(ours(reduction="mean"),
                                 _monai_sigmoid_focal(x, t, 2.0, a, "mean"), rtol=1e-12)
      np.testing.assert_allclose(ours(reduction="none"),
                                 _monai_sigmoid_focal(x, t, 2.0, a, "none"), rtol=1e-12)


def test_integer_label_focal_is_reverse_mode_only_and_second_derivatives_work():
  with jax.enable_x64(True):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(3, 4))
    y = rng.integers(0, 4, size=3)
    alpha = np.array([0.25, 0.5, 0.75, 1.0])

    def f(x, labels):
      return jaxloss.softmax_focal_loss(x, labels, gamma=2.0, alpha=alpha, reduction="sum")

    with pytest.raises(TypeError, match="forward-mode"):
      jax.jvp(lambda x: f(x, y), (x,), (x,))
    with pytest.raises(TypeError, match="forward-mode"):
      jax.jit(jax.jacfwd(lambda x: f(x, y)))(x)
    # Probability labels are plain autodiff (forward mode works); the Hessians agree.
    want = jax.jit(jax.hessian(lambda x: f(x, np.eye(4)[y])))(x)
    hess = jax.jit(jax.jacrev(jax.jacrev(lambda x: f(x, y))))(x)
    np.testing.assert_allclose(hess, want, rtol=1e-9, atol=1e-12)
    # jax.hessian is jacfwd(jacrev(f)): forward mode over the reverse pass, which works.
    np.testing.assert_allclose(jax.jit(jax.hessian(lambda x: f(x, y)))(x), want, rtol=1e-9,
                               atol=1e-12)
