"""optax's own loss test cases, run against jaxloss and optax (issue 17 §4).

The inputs below are those of optax 0.2.8's ``optax/losses/_classification_test.py``,
``_regression_test.py`` and ``_segmentation_test.py``, re-expressed as data, for
every optax loss that jaxloss also provides. Each case calls optax directly (a
runtime dependency) and jaxloss with the mapping its docstring gives:

* per-element optax values are jaxloss's ``reduction="none"``;
* ``optax.losses.l2_loss`` is half of ``mean_squared_error``;
* ``sigmoid_focal_loss``: optax's ``alpha`` defaults to None, jaxloss's to 0.25,
  so ``alpha`` is always passed;
* optax's ``dice_loss(smooth=s)`` is ``dice_loss(smooth=2 s)`` (or
  ``tversky_loss(smooth=s)``), with ``activation`` sigmoid for one channel and
  softmax otherwise (optax's ``apply_softmax``), and optax's default reduction
  (one value per image, the mean over classes) is ``reduction="none"`` then
  ``.mean(-1)``.

Random inputs of optax's tests are drawn here from seeded generators, and large
arrays are shrunk (their tests are about shapes and ranges, not sizes).
A case that jaxloss cannot reproduce is ``xfail(strict=True)`` with the
docstring sentence that documents the difference.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import optax
import pytest

import jaxloss

assert optax.__version__ == "0.2.8", optax.__version__

PER_ELEMENT_WHERE = "where: optional boolean mask over elements."
INT_AXIS = "axis: the class axis."
NO_VALUE_CHECKS = ("`value_checks`, `checked` | opt-in run-time checks of values (NaN, negative "
                   "weights, labels, probabilities) (README catalogue)")
rng = np.random.default_rng(20260117)


from peer_jit import J, _jit  # noqa: E402  (shared with the other parity suite)


def _optax(fn, *arrays, jit=True, **options):
  """optax under JAX's default promotion rules (optax relies on rank promotion)."""
  f = _jit(fn, options) if jit else functools.partial(fn, **options)
  with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
    return np.asarray(f(*arrays))


def _close(a, b, rtol=1e-5, atol=1e-6):
  np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol,
                             atol=atol)


# ---------------------------------------------------------------------------
# softmax_cross_entropy (SoftmaxCrossEntropyTest)
# ---------------------------------------------------------------------------
CE_LOGITS = np.array([[10.0, 1.0, -2.0], [1.0, 4.0, 0.2]], np.float32)
CE_PROBS = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
CE_EXPECTED = np.array([9.00013, 3.0696733], np.float32)
CE_IDS = np.array([1, 0], np.int32)
CE_PER_LOGIT_MASK = np.array([[1, 0, 0], [0, 0, 0]], bool)


@pytest.mark.parametrize("labels", ["probabilities", "class_ids"])
@pytest.mark.parametrize("batched", [False, True], ids=["scalar", "batched"])
def test_optax_softmax_cross_entropy_values(labels, batched):
  sl = slice(None) if batched else 0
  x = CE_LOGITS[sl]
  if labels == "probabilities":
    y, ref = CE_PROBS[sl], _optax(optax.losses.softmax_cross_entropy, x, CE_PROBS[sl])
  else:
    y = CE_IDS[sl]
    ref = _optax(optax.losses.softmax_cross_entropy_with_integer_labels, x, y)
  got = J.softmax_cross_entropy(x, y, reduction="none")
  _close(got, ref)
  _close(got, CE_EXPECTED[sl], atol=1e-4)


@pytest.mark.parametrize("labels", ["probabilities", "class_ids"])
def test_optax_softmax_cross_entropy_gradient_and_masked_rows(labels):
  # optax's test_gradient: the gradient, and finite gradients with a row mask.
  y = CE_PROBS if labels == "probabilities" else CE_IDS
  ref_fn = (optax.losses.softmax_cross_entropy if labels == "probabilities"
            else optax.losses.softmax_cross_entropy_with_integer_labels)
  mask = np.array([True, False])
  grad = jax.jit(jax.grad(lambda x, w: jaxloss.softmax_cross_entropy(x, y, where=w,
                                                                     reduction="sum")))
  ref = jax.jit(jax.grad(lambda x, w: ref_fn(x, y, where=w[:, None]).sum()))
  _close(grad(CE_LOGITS, np.ones(2, bool)), ref(CE_LOGITS, np.ones(2, bool)))
  masked = grad(CE_LOGITS, mask)
  assert np.all(np.isfinite(masked))
  _close(masked, ref(CE_LOGITS, mask))


@pytest.mark.xfail(strict=True, raises=ValueError, reason=PER_ELEMENT_WHERE)
@pytest.mark.parametrize("labels", ["probabilities", "class_ids"])
def test_optax_softmax_cross_entropy_per_logit_mask(labels):
  # optax's ``where`` masks logits inside the softmax; jaxloss's masks elements.
  y = CE_PROBS if labels == "probabilities" else CE_IDS
  out = J.softmax_cross_entropy(CE_LOGITS, y, where=CE_PER_LOGIT_MASK, reduction="none")
  assert np.all(np.where(CE_PER_LOGIT_MASK.any(-1), 0.0, out) == 0)


@pytest.mark.xfail(strict=True, raises=ValueError, reason=PER_ELEMENT_WHERE)
@pytest.mark.parametrize("size", [5, 10])
def test_optax_softmax_cross_entropy_logit_subset_mask(size):
  # optax's test_mask: a mask over the logits of one example equals dropping them.
  r = np.random.default_rng(size)
  x = r.standard_normal(size).astype(np.float32)
  p = r.dirichlet(np.ones(size)).astype(np.float32)
  m = r.integers(0, 2, size).astype(bool)
  _close(J.softmax_cross_entropy(x, p, where=m, reduction="none"),
         _optax(optax.losses.softmax_cross_entropy, x[m], p[m]), atol=1e-4)


@pytest.mark.parametrize("labels", ["probabilities", "class_ids"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_optax_softmax_cross_entropy_axis(axis, labels):
  shape = (4, 5, 6)
  x = rng.standard_normal(shape).astype(np.float32)
  if labels == "probabilities":
    y = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]).astype(np.float32)
    ref = _optax(optax.losses.softmax_cross_entropy, x, y, axis=axis)
  else:
    y = rng.integers(0, shape[axis], shape[:axis] + shape[axis + 1:]).astype(np.int32)
    ref = _optax(optax.losses.softmax_cross_entropy_with_integer_labels, x, y, axis=axis)
  _close(J.softmax_cross_entropy(x, y, axis=axis, reduction="none"), ref, atol=1e-5)


@pytest.mark.xfail(strict=True, raises=TypeError, reason=INT_AXIS)
@pytest.mark.parametrize("axis", [(1, 3), (3, 2), (2, 3), (-3, -1), (-1, -2), (-2, -1),
                                  (0, 1, 3), (-4, -3, -1)])
def test_optax_softmax_cross_entropy_several_class_axes(axis):
  # optax's test_axes: the classes span several axes of the logits.
  shape = (2, 3, 4, 5)
  x = rng.uniform(size=shape).astype(np.float32)
  logits_axes = {a % 4 for a in axis}
  label_shape = tuple(s for a, s in enumerate(shape) if a not in logits_axes)
  n = int(np.prod([shape[a] for a in logits_axes]))
  y = rng.integers(0, n - 1, label_shape).astype(np.int32)
  _close(J.softmax_cross_entropy(x, y, axis=axis, reduction="none"),
         _optax(optax.losses.softmax_cross_entropy_with_integer_labels, x, y, axis=axis))


# ---------------------------------------------------------------------------
# sigmoid_binary_cross_entropy (SigmoidCrossEntropyTest): (logits, labels, mean)
# ---------------------------------------------------------------------------
BCE_CASES = [
    ([-1e09, -1e-09], [1.0, 0.0], 5e08),
    ([-1e09, -1e-09], [0.0, 1.0], 0.3465736),
    ([1e09, 1e-09], [1.0, 0.0], 0.3465736),
    ([1e09, 1e-09], [0.0, 1.0], 5e08),
    ([-1e09, 1e-09], [1.0, 0.0], 5e08),
    ([-1e09, 1e-09], [0.0, 1.0], 0.3465736),
    ([1e09, -1e-09], [1.0, 0.0], 0.3465736),
    ([1e09, -1e-09], [0.0, 1.0], 5e08),
    ([0.0, 0.0], [1.0, 0.0], 0.6931472),
    ([0.0, 0.0], [0.0, 1.0], 0.6931472),
]


@pytest.mark.parametrize(("logits", "labels", "expected"), BCE_CASES)
def test_optax_sigmoid_binary_cross_entropy(logits, labels, expected):
  x, y = np.asarray(logits, np.float32), np.asarray(labels, np.float32)
  got = J.sigmoid_binary_cross_entropy(x, y, reduction="none")
  _close(got, _optax(optax.losses.sigmoid_binary_cross_entropy, x, y), rtol=1e-6)
  _close(got.mean(), expected, rtol=1e-6)


# ---------------------------------------------------------------------------
# sigmoid_focal_loss (SigmoidFocalLossTest). optax's alpha defaults to None.
# ---------------------------------------------------------------------------
def _logit(p):
  p = np.asarray(p, np.float32)
  return np.log(p / (1 - p)).astype(np.float32)


FOCAL_X = np.array([[2.0, 0.1, -2.0], [0.3, -0.1, 1.2]], np.float32)
FOCAL_Y = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], np.float32)
FOCAL_X2 = np.array([[-1.0, 0.0, 1.0], [2.0, -2.0, 0.5]], np.float32)
FOCAL_Y2 = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], np.float32)
LARGE = _logit([0.9, 0.98, 0.3, 0.99])
SMALL = _logit([0.1, 0.02, 0.09, 0.15])
ONES = np.ones(4, np.float32)
EXTREME_X = np.array([100.0, -100.0, 75.0, -75.0, 50.0, -50.0], np.float32)
EXTREME_Y = np.array([0.9, 0.1, 0.8, 0.2, 1.0, 0.0], np.float32)

# (name, logits, labels, gamma, alpha): optax's test cases.
FOCAL_CASES = [
    ("focal_equals_ce", FOCAL_X, FOCAL_Y, 0.0, None),
    ("gamma_zero_matches_bce", FOCAL_X2, FOCAL_Y2, 0.0, None),
    ("scale", FOCAL_X, FOCAL_Y, 2.0, None),
    ("large_logit_fl_less_than_ce", LARGE, ONES, 2.0, 0.5),
    ("small_logit_fl_less_than_ce", SMALL, ONES, 2.0, None),
    ("alpha_one", FOCAL_X, FOCAL_Y, 0.0, 1.0),
    ("ignore_positive", FOCAL_X, FOCAL_Y, 2.0, 0.0),
    ("ignore_negative", FOCAL_X, FOCAL_Y, 2.0, 1.0),
    ("extreme_logits", EXTREME_X, EXTREME_Y, 0.5, None),
]


@pytest.mark.parametrize(("name", "x", "y", "gamma", "alpha"),
                         [pytest.param(*c, id=c[0]) for c in FOCAL_CASES])
def test_optax_sigmoid_focal_loss(name, x, y, gamma, alpha):
  got = J.sigmoid_focal_loss(x, y, gamma=gamma, alpha=alpha, reduction="none")
  _close(got, _optax(optax.losses.sigmoid_focal_loss, x, y, gamma=gamma, alpha=alpha),
         rtol=2e-5)
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  bce = np.maximum(x64, 0) - x64 * y64 + np.log1p(np.exp(-np.abs(x64)))
  p = 1 / (1 + np.exp(-x64))
  one_minus_pt = p * (1 - y) + (1 - p) * y
  # The properties optax's tests assert.
  if gamma == 0.0 and alpha is None:
    _close(got, bce, rtol=2e-5)
  if name in ("scale", "small_logit_fl_less_than_ce"):
    _close(got / bce, one_minus_pt ** 2, rtol=2e-5)
  if name == "large_logit_fl_less_than_ce":
    _close(bce / got, 2.0 / one_minus_pt ** 2, rtol=2e-5)
  if name == "alpha_one" or name == "ignore_negative":
    assert np.all(got[y == 0] == 0)
  if name == "alpha_one":
    _close(got, bce * y, rtol=2e-5)
  if name == "ignore_positive":
    assert np.all(bce[y == 1] > 0) and np.all(got[y == 1] == 0)


def test_optax_sigmoid_focal_loss_extreme_logits_have_finite_derivatives():
  # optax's test_extreme_logits_finite_gradients; second derivatives by
  # jacrev(jacrev), the forward-mode policy of the reliability issue.
  def f(x):
    return jaxloss.sigmoid_focal_loss(x, EXTREME_Y, gamma=0.5, alpha=None, reduction="sum")

  def ref(x):
    return optax.losses.sigmoid_focal_loss(x, EXTREME_Y, gamma=0.5).sum()

  value, grad = jax.jit(jax.value_and_grad(f))(EXTREME_X)
  hess = jax.jit(jax.jacrev(jax.jacrev(f)))(EXTREME_X)
  assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))
  _close(value, jax.jit(ref)(EXTREME_X), rtol=2e-5)
  _close(grad, jax.jit(jax.grad(ref))(EXTREME_X), rtol=2e-5)


# ---------------------------------------------------------------------------
# squared_error, l2_loss, huber_loss (_regression_test.py)
# ---------------------------------------------------------------------------
REG_P = np.array([-2.0, -1.0, 0.5, 1.0], np.float32)
REG_T = np.array([-1.5, 0.0, -1, 1.0], np.float32)
HUBER_P = np.array([-2.0, 0.5, 0.0, 0.5, 2.0, 4.0, 132.0], np.float32)
HUBER_T = np.array([0.0, -0.5, 0.0, 1.0, 1.0, 2.0, 0.3], np.float32)
HUBER_EXPECTED = np.array([1.5, 0.5, 0.0, 0.125, 0.5, 1.5, 131.2])


@pytest.mark.parametrize("batched", [False, True], ids=["scalar", "batched"])
@pytest.mark.parametrize("loss", ["squared_error", "l2_loss", "huber_loss"])
def test_optax_regression_losses(loss, batched):
  p, t = (HUBER_P, HUBER_T) if loss == "huber_loss" else (REG_P, REG_T)
  if not batched:
    p, t = p[0], t[0]
  if loss == "huber_loss":
    got = J.huber_loss(p, t, delta=1.0, reduction="none")
    expected = HUBER_EXPECTED if batched else HUBER_EXPECTED[0]
  else:
    half = 0.5 if loss == "l2_loss" else 1.0   # l2_loss is half the squared error
    got = half * J.mean_squared_error(p, t, reduction="none")
    expected = half * (t.astype(np.float64) - p) ** 2
  _close(got, _optax(getattr(optax.losses, loss), p, t, **(
      {"delta": 1.0} if loss == "huber_loss" else {})))
  _close(got, expected)


@pytest.mark.parametrize("loss", ["mean_squared_error", "huber_loss"])
def test_optax_regression_rank_mismatch_raises(loss):
  # optax's test_shape_mismatch: [4] against [4, 1] is a ValueError in both.
  with pytest.raises(ValueError):
    getattr(J, loss)(REG_P, REG_T[:, None])


# ---------------------------------------------------------------------------
# dice_loss (_segmentation_test.py). optax's smooth s is jaxloss's 2 s.
# ---------------------------------------------------------------------------
def _optax_dice(p, t, **kw):
  # optax checks apply_softmax=False probabilities in Python: not under jit.
  return _optax(optax.losses.dice_loss, p, t, jit=kw.get("apply_softmax", True), **kw)


def _jax_dice(p, t, *, smooth=1.0, apply_softmax=True, reduction="mean", class_weights=None,
              ignore_background=False):
  """optax's dice_loss options through jaxloss.dice_loss."""
  c = p.shape[-1]
  activation = None if not apply_softmax else "sigmoid" if c == 1 else "softmax"
  per_class = J.dice_loss(p, t, activation=activation, smooth=2 * smooth,
                          class_weights=class_weights, include_background=not ignore_background,
                          reduction="none")
  if ignore_background:
    per_class = per_class[..., 1:]
  return {"none": per_class, "mean": per_class.mean(-1), "sum": per_class.sum(-1)}[reduction]


def _binary(shape, p=0.5, seed=0):
  r = np.random.default_rng(seed)
  return (r.standard_normal(shape).astype(np.float32),
          (r.uniform(size=shape) < p).astype(np.float32))


def _multiclass(shape, seed=0, probs=None):
  r = np.random.default_rng(seed)
  c = shape[-1]
  ids = r.choice(c, shape[:-1], p=probs)
  return r.standard_normal(shape).astype(np.float32), np.eye(c, dtype=np.float32)[ids]


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return (e / e.sum(-1, keepdims=True)).astype(np.float32)


GRID = np.array([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]], np.float32)[..., None]
GRID_IDS = np.array([[0, 1, 2], [1, 0, 2], [2, 2, 1]])
GRID_ONEHOT = np.eye(3, dtype=np.float32)[GRID_IDS][None]

# (name, predictions, targets, optax options): optax's dice_loss value tests.
DICE_CASES = [
    ("shapes_binary_2d", *_binary((2, 4, 4, 1), seed=1), {}),
    ("shapes_binary_3d", *_binary((2, 3, 3, 3, 1), seed=2), {}),
    ("shapes_binary_single", *_binary((1, 4, 4, 1), seed=3), {}),
    ("shapes_3_classes", *_multiclass((2, 4, 4, 3), seed=4), {}),
    ("shapes_5_classes", *_multiclass((2, 4, 4, 5), seed=5), {}),
    ("shapes_10_classes", *_multiclass((1, 4, 4, 10), seed=6), {}),
    ("perfect_overlap_binary", np.where(GRID > 0, 10.0, -10.0).astype(np.float32), GRID,
     {"smooth": 1.0}),
    ("no_overlap_binary", np.where(GRID > 0, -10.0, 10.0).astype(np.float32), GRID,
     {"smooth": 1.0}),
    ("perfect_overlap_multiclass", np.where(GRID_ONEHOT > 0, 10.0, -10.0).astype(np.float32),
     GRID_ONEHOT, {"smooth": 1.0}),
    ("loss_bounds_binary", *_binary((2, 4, 4, 1), 0.3, seed=7), {}),
    ("loss_bounds_multiclass", *_multiclass((2, 4, 4, 4), seed=7), {}),
    ("smoothing_0", *_binary((2, 4, 4, 1), seed=8), {"smooth": 0.0}),
    ("smoothing_1", *_binary((2, 4, 4, 1), seed=8), {"smooth": 1.0}),
    ("smoothing_10", *_binary((2, 4, 4, 1), seed=8), {"smooth": 10.0}),
    ("class_weights_equal", *_multiclass((2, 4, 4, 3), seed=9),
     {"class_weights": np.ones(3, np.float32)}),
    ("class_weights_custom", *_multiclass((2, 4, 4, 3), seed=9),
     {"class_weights": np.array([1.0, 2.0, 0.5], np.float32)}),
    ("reduction_mean", *_multiclass((2, 4, 4, 3), seed=10), {"reduction": "mean"}),
    ("reduction_sum", *_multiclass((2, 4, 4, 3), seed=10), {"reduction": "sum"}),
    ("reduction_none", *_multiclass((2, 4, 4, 3), seed=10), {"reduction": "none"}),
    ("numerical_stability_large", np.full((1, 4, 4, 1), 100.0, np.float32),
     np.ones((1, 4, 4, 1), np.float32), {}),
    ("numerical_stability_small", np.full((1, 4, 4, 1), -100.0, np.float32),
     np.ones((1, 4, 4, 1), np.float32), {}),
    ("edge_all_zero_target", _binary((1, 4, 4, 1), seed=11)[0],
     np.zeros((1, 4, 4, 1), np.float32), {"smooth": 1.0}),
    ("edge_all_one_target", _binary((1, 4, 4, 1), seed=11)[0],
     np.ones((1, 4, 4, 1), np.float32), {"smooth": 1.0}),
    ("ignore_background_false", *_multiclass((2, 4, 4, 3), seed=12),
     {"ignore_background": False, "reduction": "none"}),
    ("ignore_background_true", *_multiclass((2, 4, 4, 3), seed=12),
     {"ignore_background": True, "reduction": "none"}),
    ("jit_compilation", *_binary((2, 8, 1), 0.3, seed=13), {}),
]


@pytest.mark.parametrize(("name", "p", "t", "options"),
                         [pytest.param(*c, id=c[0]) for c in DICE_CASES])
def test_optax_dice_loss(name, p, t, options):
  got = _jax_dice(p, t, **options)
  ref = _optax_dice(p, t, **options)
  assert got.shape == ref.shape
  _close(got, ref, rtol=2e-5, atol=2e-6)
  assert np.all(np.isfinite(got))
  if name.startswith(("loss_bounds", "smoothing")):
    assert np.all(got >= -1e-6) and np.all(got <= 1 + 1e-6)


@pytest.mark.parametrize("alpha_beta", [(0.3, 0.7), (0.5, 0.5)])
def test_optax_dice_loss_weighting_parameters_are_tversky(alpha_beta):
  # optax's test_dice_loss_weighting_parameters: probabilities, smooth = 1.
  alpha, beta = alpha_beta
  probs = np.array([[[0.1, 0.9], [0.8, 0.2]]], np.float32)
  targets = np.array([[[0.0, 1.0], [1.0, 0.0]]], np.float32)
  ref = _optax_dice(probs, targets, smooth=1.0, alpha=alpha, beta=beta, apply_softmax=False)
  got = J.tversky_loss(probs, targets, alpha=alpha, beta=beta, smooth=1.0, reduction="none")
  _close(got.mean(-1), ref)
  if alpha == beta:
    _close(_jax_dice(probs, targets, smooth=1.0, apply_softmax=False), ref)


def test_optax_dice_loss_apply_softmax_flag():
  logits, targets = _multiclass((1, 8, 8, 3), seed=14)
  probs = _softmax(logits)
  ref = _optax_dice(logits, targets)
  _close(_jax_dice(logits, targets), ref)
  _close(_jax_dice(probs, targets, apply_softmax=False), ref)


def test_optax_dice_loss_gradient():
  p, t = _binary((1, 8, 8, 1), 0.3, seed=15)
  grad = jax.jit(jax.grad(lambda x: jaxloss.dice_loss(x, t, activation="sigmoid", smooth=2.0,
                                                      reduction="none").mean()))(p)
  ref = jax.jit(jax.grad(lambda x: optax.losses.dice_loss(x, t).mean()))(p)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
  _close(grad, ref, rtol=1e-4, atol=1e-7)


def test_optax_dice_loss_vmap():
  p, t = _binary((4, 4, 1), 0.3, seed=16)
  got = jax.jit(jax.vmap(lambda a, b: jaxloss.dice_loss(
      a[None], b[None], activation="sigmoid", smooth=2.0, reduction="none").mean(-1)))(p, t)
  ref = jax.jit(jax.vmap(lambda a, b: optax.losses.dice_loss(a[None], b[None])))(p, t)
  assert got.shape == ref.shape == (4, 1)
  _close(got, ref)


def test_optax_binary_dice_loss_convenience():
  p, t = _binary((2, 16, 16), 0.3, seed=17)
  ref = _optax(optax.losses.binary_dice_loss, p, t)
  _close(_jax_dice(p[..., None], t[..., None]), ref)
  _close(_optax(optax.losses.binary_dice_loss, p[..., None], t[..., None]), ref, rtol=1e-5)


@pytest.mark.parametrize("ignore_background", [False, True])
def test_optax_multiclass_generalized_dice_loss_is_dice_with_class_weights(ignore_background):
  # optax's GDL variant: dice_loss with batch-level inverse squared frequency
  # weights, normalised to mean 1 (not Sudre's generalized_dice_loss).
  size = (4, 4, 4, 3) if not ignore_background else (2, 4, 4, 4)
  probs = [0.8, 0.15, 0.05] if not ignore_background else None
  p, t = _multiclass(size, seed=18, probs=probs)
  freq = t.sum(axis=(0, 1, 2)).astype(np.float64)
  w = 1.0 / (freq ** 2 + 1e-7)
  w = (w / w.sum() * len(w)).astype(np.float32)
  got = _jax_dice(p, t, class_weights=w, reduction="none",
                  ignore_background=ignore_background).mean()
  ref = _optax(optax.losses.multiclass_generalized_dice_loss, p, t,
               ignore_background=ignore_background)
  _close(got, ref, rtol=2e-5)


def test_optax_dice_loss_class_mismatch_raises():
  p = _multiclass((2, 16, 16, 3), seed=19)[0]
  t = _binary((2, 16, 16, 2), seed=19)[1]
  with pytest.raises(ValueError):
    _jax_dice(p, t)


def test_optax_dice_loss_valid_probabilities():
  logits, _ = _multiclass((1, 8, 8, 3), seed=20)
  probs = _softmax(logits)
  t = _binary((1, 8, 8, 3), 0.3, seed=20)[1]
  _close(_jax_dice(probs, t, apply_softmax=False), _optax_dice(probs, t, apply_softmax=False))


@pytest.mark.xfail(strict=True, reason=NO_VALUE_CHECKS)
def test_optax_dice_loss_invalid_probabilities_raise():
  # optax checks that probabilities sum to 1 (concrete inputs only); jaxloss
  # checks values only when asked (jaxloss.checked).
  p = np.random.default_rng(21).uniform(size=(2, 8, 8, 3)).astype(np.float32)
  t = _binary((2, 8, 8, 3), 0.3, seed=21)[1]
  with pytest.raises(ValueError):
    _jax_dice(p, t, apply_softmax=False)


def test_optax_dice_loss_single_channel_ignore_background_raises():
  # optax's test_ignore_background_parameter, binary part: optax ignores
  # ignore_background for one channel; jaxloss raises a ValueError instead (a
  # single channel has no background to exclude).
  p, t = _binary((2, 8, 8, 1), seed=22)
  _close(_optax_dice(p, t, ignore_background=True), _optax_dice(p, t))
  with pytest.raises(ValueError, match="include_background"):
    _jax_dice(p, t, ignore_background=True)
