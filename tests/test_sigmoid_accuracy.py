"""Per-element accuracy of the sigmoid losses against a high-precision reference.

``sigmoid_binary_cross_entropy`` (also with ``pos_weight`` and label smoothing)
and ``sigmoid_focal_loss`` are written as sums and products of non-negative
terms (issue 17 §1), so every element, value and gradient, is accurate to a
few ulps, including the tiny losses of confidently correct logits.

Reference: ``mpmath`` at 256 bits, evaluated at the exact float inputs. The
bound for element ``i`` is ``|got − ref| <= rtol · scale + floor``:

* ``scale`` is ``|ref|`` for values (sums of non-negative terms) and for the
  gradients at ``y ∈ {0, 1}`` (one sign). With a soft label (``y = 0.3``) the
  gradient ``−q y σ(−x) + (1 − y) σ(x)`` changes sign, and near its root no
  floating-point evaluation is relatively accurate (the condition number
  diverges there); ``scale`` is then the sum of the absolute values of the
  terms, which bounds the error of any cancellation-free evaluation.
* ``floor`` is 4 × the smallest normal number: it only matters where the true
  value underflows, or a term underflowed before a factor up to 4 (``pos_weight``
  2.5 times ``softplus(−87.5)`` in float32, where XLA flushes subnormals to 0).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss

mpmath = pytest.importorskip("mpmath")
mp = mpmath.mp.clone() if hasattr(mpmath.mp, "clone") else mpmath.mp
mp.prec = 256

RTOL = {np.float32: 1e-6, np.float64: 1e-12}

_SPECIAL = [0.0, 1e-3, -1e-3, 8.0, -8.0, 12.0, -12.0, 15.0, -15.0, 0.5, -0.5, 1.0, -1.0,
            30.0, -30.0, 88.0, -88.0, 1e-30, -1e-30, 100.0, -100.0]
GRID = np.unique(np.concatenate([np.linspace(-100.0, 100.0, 401), _SPECIAL]))
LABELS = (0.0, 0.3, 1.0)
POS_WEIGHT = 2.5
GAMMA = 2.0


def _mpf(v) -> mpmath.mpf:
  return mp.mpf(float(v))  # exact: every float32 and float64 is a double


def _sp(x):
  """softplus(x) = log(1 + e^x) at 256 bits."""
  return mp.log1p(mp.exp(x))


def _sig(x):
  return 1 / (1 + mp.exp(-x))


def _bce_ref(x, y, y_bar, q):
  """(value, gradient, gradient scale) of q·y·softplus(−x) + y_bar·softplus(x)."""
  value = q * y * _sp(-x) + y_bar * _sp(x)
  pos, neg = y_bar * _sig(x), q * y * _sig(-x)
  return value, pos - neg, pos + neg


def _focal_ref(x, y, alpha, gamma):
  """(value, gradient, gradient scale) of α_t (1 − p_t)^γ BCE."""
  y_bar = 1 - y
  s, s_neg = _sig(x), _sig(-x)
  bce, d_bce, scale_bce = _bce_ref(x, y, y_bar, 1)
  f = y_bar * s + y * s_neg
  df = (y_bar - y) * s * s_neg
  a_t = 1 if alpha is None else alpha * y + (1 - alpha) * y_bar
  value = a_t * f**gamma * bce
  t1 = gamma * f ** (gamma - 1) * df * bce
  t2 = f**gamma * d_bce
  scale = a_t * (abs(t1) + f**gamma * scale_bce)
  return value, a_t * (t1 + t2), scale


@functools.cache
def _reference(kind: str, dtype: type) -> tuple[np.ndarray, ...]:
  """(x, y, value, grad, scale) on the grid × labels, at the dtype's exact inputs."""
  xs = GRID.astype(dtype)
  rows = []
  for y in LABELS:
    yd = dtype(y)
    for x in xs:
      xm, ym = _mpf(x), _mpf(yd)
      if kind == "bce":
        out = _bce_ref(xm, ym, 1 - ym, 1)
      elif kind == "bce_pos_weight":
        out = _bce_ref(xm, ym, 1 - ym, _mpf(dtype(POS_WEIGHT)))
      elif kind == "bce_smoothing":
        eps = _mpf(dtype(0.1))
        out = _bce_ref(xm, (1 - eps) * ym + eps / 2, (1 - eps) * (1 - ym) + eps / 2, 1)
      elif kind == "focal_alpha":
        out = _focal_ref(xm, ym, _mpf(dtype(0.25)), GAMMA)
      else:
        out = _focal_ref(xm, ym, None, GAMMA)
      rows.append((x, yd, *(float(v) for v in out)))
  x, y, value, grad, scale = (np.array(c) for c in zip(*rows, strict=True))
  return x.astype(dtype), y.astype(dtype), value, grad, scale


def _ours(kind: str):
  def per_element(x, y):
    x, y = x[:, None], y[:, None]  # [N, 1]: one class, so pos_weight has shape (1,)
    if kind == "bce":
      out = jaxloss.sigmoid_binary_cross_entropy(x, y, reduction="none")
    elif kind == "bce_pos_weight":
      pw = jnp.full((1,), POS_WEIGHT, x.dtype)
      out = jaxloss.sigmoid_binary_cross_entropy(x, y, pos_weight=pw, reduction="none")
    elif kind == "bce_smoothing":
      out = jaxloss.sigmoid_binary_cross_entropy(x, y, label_smoothing=0.1, reduction="none")
    elif kind == "focal_alpha":
      out = jaxloss.sigmoid_focal_loss(x, y, gamma=GAMMA, alpha=0.25, reduction="none")
    else:
      out = jaxloss.sigmoid_focal_loss(x, y, gamma=GAMMA, alpha=None, reduction="none")
    return out[:, 0]
  return per_element


def _value_and_grad(f, x, y):
  """Per-element values and d value_i / d x_i (the loss is elementwise)."""
  value, vjp = jax.vjp(lambda x: f(x, y), x)
  return value, vjp(jnp.ones_like(value))[0]


def _assert_accurate(got, ref, scale, dtype, what, x, y):
  got = np.asarray(got, np.float64)
  tiny = float(np.finfo(dtype).tiny)
  bound = RTOL[dtype] * scale + 4 * tiny
  err = np.abs(got - ref)
  bad = ~(err <= bound)
  if bad.any():
    i = np.argmax(np.where(bad, err / np.maximum(scale, tiny), -1))
    raise AssertionError(
        f"{what}: {bad.sum()} element(s) beyond {RTOL[dtype]:g}·scale; worst at x={x[i]!r}, "
        f"y={y[i]!r}: got {got[i]!r}, want {ref[i]!r} (relative {err[i] / scale[i]:.3g})")


KINDS = ["bce", "bce_pos_weight", "bce_smoothing", "focal_alpha", "focal_no_alpha"]


def _run(kind, dtype):
  x, y, value, grad, scale = _reference(kind, dtype)
  got_v, got_g = jax.jit(functools.partial(_value_and_grad, _ours(kind)))(x, y)
  assert got_v.dtype == dtype and got_g.dtype == dtype
  _assert_accurate(got_v, value, np.abs(value), dtype, f"{kind} value", x, y)
  _assert_accurate(got_g, grad, scale, dtype, f"{kind} gradient", x, y)
  return x, y, got_v, got_g, value, grad, scale


@pytest.mark.parametrize("kind", KINDS)
def test_per_element_values_and_gradients_are_accurate_in_float32(kind):
  _run(kind, np.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_per_element_values_and_gradients_are_accurate_in_float64(kind):
  with jax.enable_x64(True):
    _run(kind, np.float64)


def test_confidently_correct_logits_keep_their_tiny_loss():
  # Issue 17's table: with y = 1 the old (q y + 1 − y)·softplus(x) − q y x form lost
  # 8.6e-4 of the value at x = 8, 6.9e-2 at x = 12 and returned 0 from x = 15.
  x = jnp.array([8.0, 12.0, 15.0, 30.0], jnp.float32)
  got = jaxloss.sigmoid_binary_cross_entropy(x, jnp.ones_like(x), axis=0, reduction="none")
  want = np.log1p(np.exp(-np.array([8.0, 12.0, 15.0, 30.0])))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert float(got[2]) > 3e-7


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_per_element_equality_with_optax_bce(dtype):
  with jax.enable_x64(dtype == np.float64):
    x, y, ours_v, ours_g, _, _, scale = _run("bce", dtype)
    theirs_v, theirs_g = jax.jit(functools.partial(
        _value_and_grad, optax.sigmoid_binary_cross_entropy))(x, y)
    tiny = 4 * float(np.finfo(dtype).tiny)
    rtol = 2 * RTOL[dtype]  # both within RTOL of the reference
    np.testing.assert_array_less(np.abs(np.asarray(ours_v) - theirs_v),
                                 rtol * np.abs(np.asarray(ours_v, np.float64)) + tiny)
    np.testing.assert_array_less(np.abs(np.asarray(ours_g) - theirs_g), rtol * scale + tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha", [0.25, None])
def test_per_element_equality_with_optax_focal_where_optax_is_accurate(dtype, alpha):
  # optax forms exp(γ·log(1 − p_t)): about γ·|log(1 − p_t)| ulps of error on confident
  # logits. Compared where that stays below RTOL / 2 (all of [−100, 100] in float64).
  # Note the defaults differ: ours alpha=0.25, optax's None; both are passed here.
  kind = "focal_alpha" if alpha is not None else "focal_no_alpha"
  with jax.enable_x64(dtype == np.float64):
    x, y, ours_v, ours_g, _, _, scale = _run(kind, dtype)
    f = functools.partial(optax.sigmoid_focal_loss, alpha=alpha, gamma=GAMMA)
    theirs_v, theirs_g = jax.jit(functools.partial(_value_and_grad, f))(x, y)
    xd, yd = x.astype(np.float64), y.astype(np.float64)
    log1m_pt = np.logaddexp(-np.logaddexp(0, -xd) + np.log(1 - yd + 1e-300),
                            -np.logaddexp(0, xd) + np.log(yd + 1e-300))
    accurate = GAMMA * np.abs(log1m_pt) * np.finfo(dtype).eps < RTOL[dtype] / 2
    assert accurate.mean() > (0.2 if dtype == np.float32 else 0.99)
    tiny = 4 * float(np.finfo(dtype).tiny)
    rtol = 2 * RTOL[dtype]
    ov, og = np.asarray(ours_v, np.float64)[accurate], np.asarray(ours_g)[accurate]
    np.testing.assert_array_less(np.abs(ov - theirs_v[accurate]), rtol * np.abs(ov) + tiny)
    np.testing.assert_array_less(np.abs(og - theirs_g[accurate]), rtol * scale[accurate] + tiny)
