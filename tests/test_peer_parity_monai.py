"""MONAI's own loss test cases, run against jaxloss (issue 17 §4).

The cases live in ``peer_data/monai_cases.json``: MONAI's ``TEST_CASES`` tables
of ``DiceLoss``, ``GeneralizedDiceLoss``, ``TverskyLoss``, ``FocalLoss`` and
``DiceCELoss`` and its ignore-index tests, recorded as data with the MONAI
version and the source file of each case (``peer_data/record_monai_cases.py``
re-records them; CI needs no torch). Each MONAI option is mapped to jaxloss as
the docstrings say:

* NCHW inputs: ``axis=1``; MONAI ``batch=True``: ``reduce_axes`` = every axis
  but 1, batch included;
* ``sigmoid``/``softmax``: ``activation``; ``other_act=f``: ``f`` applied to the
  inputs first, then ``activation=None``;
* ``to_onehot_y=True``: integer class ids (the target without its channel
  axis); otherwise the one-hot / multi-hot float target;
* ``smooth_nr = smooth_dr = s``: ``smooth=s`` (``s/2`` for ``jaccard=True``);
* ``squared_pred``: ``squared``; ``weight``: ``class_weights`` (Dice family),
  per-channel ``weights`` (sigmoid focal), ``pos_weight`` (sigmoid DiceCE);
* ``reduction``: the same name; MONAI's ``"none"`` keeps size-1 spatial axes,
  which are dropped before comparing.

A case that jaxloss cannot reproduce is ``xfail(strict=True)`` with the
docstring sentence that documents the difference.
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import pytest
from peer_jit import J  # noqa: E402  (shared with the other parity suite)

import jaxloss

DATA = json.loads(pathlib.Path(__file__).with_name("peer_data").joinpath(
    "monai_cases.json").read_text())
assert DATA["monai_version"] == "1.6.1"

SOFT_LABEL = ("The Dice family uses D = (2 Σ p t + s) / (Σ p^k + Σ t^k + s) (dice_loss "
              "docstring); MONAI's soft_label=True L1 form of the overlap is not offered.")
SMOOTH = "smooth: added to numerator and denominator."
ONE_HOT_IGNORE = "ignore_index: integer label whose pixels leave every sum."
DICE_CE_SOFTMAX = ("Dice is :func:`jaxloss.dice_loss` with ``activation=\"softmax\"`` "
                   "(softmax_ce_dice_loss docstring); MONAI's DiceCELoss defaults to "
                   "softmax=False, a Dice of the raw inputs.")


def _xfail(reason, raises=None):
  return pytest.mark.xfail(strict=True, reason=reason, raises=raises)


# Cases that jaxloss does not reproduce, by id, with the documented reason.
TABLE_XFAIL = {
    "DiceLoss-02": _xfail(SOFT_LABEL),
    "GeneralizedDiceLoss-02": _xfail(SOFT_LABEL),
    "TverskyLoss-02": _xfail(SOFT_LABEL),
    # MONAI's DiceCELoss table runs with softmax=False: see also
    # test_monai_dice_ce_equals_the_sum_of_jaxloss_parts, which passes.
    **{f"DiceCELoss-{i:02d}": _xfail(DICE_CE_SOFTMAX) for i in range(6)},
}


def _smooth(kw):
  nr, dr = kw.get("smooth_nr", 1e-5), kw.get("smooth_dr", 1e-5)
  return nr if nr == dr else None


def _smooth_xfails():
  """Cases with smooth_nr != smooth_dr that differ beyond the table tolerance."""
  return {"DiceLoss-14": _xfail(SMOOTH), "DiceLoss-15": _xfail(SMOOTH),
          "TverskyLoss-05": _xfail(SMOOTH), "TverskyLoss-14": _xfail(SMOOTH)}


TABLE_XFAIL.update(_smooth_xfails())


def _activated(kw, x):
  """MONAI's activation option as (transformed input, jaxloss ``activation``)."""
  if kw.get("sigmoid"):
    return x, "sigmoid"
  if kw.get("softmax"):
    return x, "softmax"
  if kw.get("other_act") == "tanh":
    return np.tanh(x), None
  if kw.get("other_act") == "log_softmax":
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True)), None
  return x, None


def _labels(kw, x, t):
  """MONAI's target as jaxloss labels: class ids for ``to_onehot_y``, else floats."""
  if kw.get("to_onehot_y") and x.shape[1] > 1:
    return np.asarray(t)[:, 0].astype(np.int32)
  return np.asarray(t, np.float32)


def _reduce_axes(kw, x):
  if kw.get("batch"):
    return tuple(a for a in range(x.ndim) if a != 1)
  return None


def _overlap(case):
  """DiceLoss, GeneralizedDiceLoss and TverskyLoss through the mapping above."""
  kw = case["kwargs"]
  x = np.asarray(case["input"], np.float32)
  labels = _labels(kw, x, case["target"])
  x, activation = _activated(kw, x)
  smooth = _smooth(kw)
  if smooth is None:                      # unmappable: the nearest single smooth
    smooth = kw["smooth_dr"]
  common = dict(axis=1, activation=activation, reduce_axes=_reduce_axes(kw, x),
                include_background=kw.get("include_background", True),
                reduction=kw.get("reduction", "mean"))
  if case["loss"] == "DiceLoss":
    cw = kw.get("weight")
    cw = None if cw is None else np.asarray(cw, np.float32)
    if kw.get("jaccard"):
      return J.jaccard_loss(x, labels, smooth=smooth / 2, squared=kw.get("squared_pred",
                                                                             False),
                                  class_weights=cw, **common)
    return J.dice_loss(x, labels, smooth=smooth, squared=kw.get("squared_pred", False),
                             class_weights=cw, **common)
  if case["loss"] == "TverskyLoss":
    return J.tversky_loss(x, labels, alpha=kw.get("alpha", 0.5), beta=kw.get("beta", 0.5),
                                smooth=smooth, **common)
  return J.generalized_dice_loss(x, labels, weight_type=kw.get("w_type", "square"),
                                       smooth=smooth, **common)


def _focal(case):
  """FocalLoss: sigmoid_focal_loss per channel, or softmax_focal_loss."""
  kw = case["kwargs"]
  x = np.asarray(case["input"], np.float32)
  t = np.asarray(case["target"])
  c = x.shape[1]
  reduction = kw.get("reduction", "mean")
  if kw.get("use_softmax"):
    ids = t[:, 0] if kw.get("to_onehot_y") else t.argmax(1)
    a = kw.get("alpha")
    alpha = None if a is None else np.asarray([1 - a] + [a] * (c - 1), np.float32)
    total = J.softmax_focal_loss(x, ids.astype(np.int32), axis=1,
                                       gamma=kw.get("gamma", 2.0), alpha=alpha, reduction="sum")
    assert reduction == "mean"
    return total / (ids.size * c)          # MONAI averages over the class axis too
  onehot = np.moveaxis(np.eye(c, dtype=np.float32)[t[:, 0]], -1, 1) if kw.get("to_onehot_y") \
      else t.astype(np.float32)
  weights = None
  if kw.get("weight") is not None:
    weights = np.asarray(kw["weight"], np.float32).reshape(1, c, 1, 1)
  if not kw.get("include_background", True):
    x, onehot = x[:, 1:], onehot[:, 1:]
  return J.sigmoid_focal_loss(x, onehot, axis=1,
                                    gamma=kw.get("gamma", 2.0), alpha=kw.get("alpha"),
                                    weights=weights, reduction=reduction)


def _dice_ce(case):
  """DiceCELoss: softmax_ce_dice_loss for C > 1, BCE + Dice for one channel."""
  kw = case["kwargs"]
  x = np.asarray(case["input"], np.float32)
  t = case["target"]
  weight = kw.get("weight")
  weight = None if weight is None else np.asarray(weight, np.float32)
  if x.shape[1] == 1:
    # One channel: MONAI uses BCEWithLogitsLoss(pos_weight=weight) and a sigmoid
    # DiceLoss whose class weight is unused for a single channel.
    return J.sigmoid_bce_dice_loss(x, np.asarray(t, np.float32), axis=1,
                                         pos_weight=weight, bce_weight=kw.get("lambda_ce", 1.0),
                                         dice_weight=kw.get("lambda_dice", 1.0))
  labels = _labels(kw, x, t)
  # Integer targets reach torch's cross_entropy(weight=...), a weighted mean.
  reduction = "weighted_mean" if labels.dtype == np.int32 and weight is not None else "mean"
  return J.softmax_ce_dice_loss(
      x, labels, axis=1, class_weights=weight, include_background=kw.get("include_background",
                                                                         True),
      ce_weight=kw.get("lambda_ce", 1.0), dice_weight=kw.get("lambda_dice", 1.0),
      reduction=reduction)


def _dice_ce_parts(case):
  """DiceCELoss as the sum of jaxloss's public parts, for any MONAI activation."""
  kw = case["kwargs"]
  x = np.asarray(case["input"], np.float32)
  weight = kw.get("weight")
  weight = None if weight is None else np.asarray(weight, np.float32)
  labels = _labels(kw, x, case["target"])
  _, activation = _activated(kw, x)
  lam_ce, lam_dice = kw.get("lambda_ce", 1.0), kw.get("lambda_dice", 1.0)
  if x.shape[1] == 1:
    ce = J.sigmoid_binary_cross_entropy(x, labels, axis=1, pos_weight=weight)
    weight = None                           # MONAI's Dice ignores a one-channel weight
  else:
    reduction = "weighted_mean" if labels.dtype == np.int32 else "mean"
    ce = J.softmax_cross_entropy(x, labels, axis=1, class_weights=weight,
                                       reduction=reduction)
  dice = J.dice_loss(x, labels, axis=1, activation=activation, class_weights=weight,
                           include_background=kw.get("include_background", True))
  return lam_ce * ce + lam_dice * dice


RUN = {"DiceLoss": _overlap, "GeneralizedDiceLoss": _overlap, "TverskyLoss": _overlap,
       "FocalLoss": _focal, "DiceCELoss": _dice_ce}


def _table_params():
  for case in DATA["cases"]:
    marks = TABLE_XFAIL.get(case["id"], ())
    yield pytest.param(case, id=case["id"], marks=marks)


@pytest.mark.parametrize("case", list(_table_params()))
def test_monai_table_case(case):
  got = np.asarray(RUN[case["loss"]](case))
  expected = np.asarray(case["expected"], np.float64)
  if expected.ndim:                         # MONAI's "none" keeps size-1 spatial axes
    expected = expected.reshape(got.shape)
  np.testing.assert_allclose(got, expected, rtol=case["rtol"], atol=max(case["atol"], 1e-6))


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in DATA["cases"]
                                  if c["loss"] == "DiceCELoss"])
def test_monai_dice_ce_equals_the_sum_of_jaxloss_parts(case):
  np.testing.assert_allclose(_dice_ce_parts(case), case["expected"], rtol=case["rtol"],
                             atol=case["atol"])


def test_monai_table_values_were_verified_on_the_recorded_version():
  for case in DATA["cases"]:
    np.testing.assert_allclose(case["monai"], case["expected"], rtol=case["rtol"],
                               atol=max(case["atol"], 1e-6))


# ---------------------------------------------------------------------------
# MONAI's ignore-index tests.
# ---------------------------------------------------------------------------
IGNORE = {c["id"]: c for c in DATA["ignore_index_cases"]}


def _ignore_case(test, loss, **kwargs):
  return [c for c in DATA["ignore_index_cases"] if c["test"] == test and c["loss"] == loss
          and all(c["kwargs"].get(k) == v for k, v in kwargs.items())]


def _overlap_with_ignore(loss, kw, x, ids):
  fn = {"DiceLoss": J.dice_loss, "TverskyLoss": J.tversky_loss}[loss]
  act = "softmax" if kw.get("softmax") else "sigmoid" if kw.get("sigmoid") else None
  return fn(x, ids, axis=1, activation=act, ignore_index=kw["ignore_index"],
            reduction=kw.get("reduction", "mean"))


def _focal_with_ignore(kw, x, t):
  """FocalLoss with ``ignore_index``: class ids (softmax) or a ``where`` mask (sigmoid)."""
  ii = kw["ignore_index"]
  t = np.asarray(t)
  if kw.get("use_softmax"):
    return J.softmax_focal_loss(x, t[:, 0].astype(np.int32), axis=1,
                                      ignore_index=ii, alpha=None)
  keep = np.ones(t.shape, bool) if ii is None else t != ii
  if kw.get("to_onehot_y"):
    c = x.shape[1]
    onehot = np.moveaxis(np.eye(c, dtype=np.float32)[np.where(keep, t, 0)[:, 0]], -1, 1)
  else:
    onehot = t.astype(np.float32)        # the masked 255s stay in the labels: harmless
  return J.sigmoid_focal_loss(x, onehot, axis=1, alpha=None, where=keep,
                              reduction=kw.get("reduction", "mean"))


def _ignore_loss(case, x):
  kw = case["kwargs"]
  x = np.asarray(x, np.float32)
  if case["loss"] == "FocalLoss":
    return _focal_with_ignore(kw, x, case["target"])
  if case["target_dtype"] == "float32":   # a one-channel float target with sentinels
    labels = np.asarray(case["target"], np.float32)
  else:
    labels = np.asarray(case["target"], np.int32)[:, 0]
  return _overlap_with_ignore(case["loss"], kw, x, labels)


def test_dice_ignore_index_inside_class_range_equals_cropping():
  # test_dice_loss.py::test_ignore_index_index_target. ignore_index=2 lies inside
  # [0, C): its pixels leave every sum, which equals cropping them away.
  (case,) = _ignore_case("ignore_index_index_target", "DiceLoss")
  x = np.asarray(case["inputs"][0], np.float32)
  ids = np.asarray(case["target"], np.int32)[:, 0]
  got = J.dice_loss(x, ids, axis=1, activation="softmax", ignore_index=2)
  crop = J.dice_loss(x[:, :, :1], ids[:, :1], axis=1, activation="softmax")
  np.testing.assert_allclose(got, case["monai"][0], rtol=1e-5)
  np.testing.assert_allclose(crop, case["monai_crop"], rtol=1e-5)
  np.testing.assert_allclose(got, crop, rtol=1e-6)


def test_dice_ignore_index_from_class_ids():
  # test_dice_loss.py::test_ignore_index_one_hot_target, the class-id side.
  (case,) = _ignore_case("ignore_index_one_hot_target", "DiceLoss")
  x = np.asarray(case["inputs"][0], np.float32)
  ids = np.asarray(case["index_target"], np.int32)[:, 0]
  got = J.dice_loss(x, ids, axis=1, activation="softmax", ignore_index=1)
  np.testing.assert_allclose(got, case["monai_from_index"], rtol=1e-5)


@_xfail(ONE_HOT_IGNORE, raises=ValueError)
def test_dice_ignore_index_with_one_hot_labels():
  # test_dice_loss.py::test_ignore_index_one_hot_target, the one-hot side: jaxloss
  # takes ignore_index with class ids only (one-hot labels raise a ValueError).
  (case,) = _ignore_case("ignore_index_one_hot_target", "DiceLoss")
  x = np.asarray(case["inputs"][0], np.float32)
  got = J.dice_loss(x, np.asarray(case["target"], np.float32), axis=1, activation="softmax",
                          ignore_index=1)
  np.testing.assert_allclose(got, case["monai"][0], rtol=1e-5)


def test_dice_ignore_index_gradients_are_zero_on_ignored_pixels():
  (case,) = _ignore_case("gradients_ignored", "DiceLoss")
  x = np.asarray(case["inputs"][0], np.float32)
  ids = np.asarray(case["target"], np.int32)[:, 0]
  grad = jax.jit(jax.grad(lambda v: jaxloss.dice_loss(v, ids, axis=1, activation="softmax",
                                                      ignore_index=2)))(x)
  assert np.all(np.asarray(grad)[:, :, 2:] == 0.0)
  np.testing.assert_allclose(grad, case["monai_grad"], rtol=1e-4, atol=1e-7)


def _ignore_params(test):
  for case in DATA["ignore_index_cases"]:
    if case["test"] != test:
      continue
    marks = ()
    if case["loss"] != "FocalLoss" and test in ("loss_ignore_consistency",
                                                "loss_ignore_masked_mean"):
      # A one-channel float target with 255 sentinels: jaxloss's Dice family
      # takes ignore_index with class ids only.
      marks = _xfail(ONE_HOT_IGNORE, raises=ValueError)
    yield pytest.param(case, id=case["id"], marks=marks)


@pytest.mark.parametrize("case", [*_ignore_params("loss_ignore_consistency"),
                                  *_ignore_params("loss_ignore_class_index"),
                                  *_ignore_params("loss_ignore_sentinel_onehot"),
                                  *_ignore_params("loss_ignore_masked_mean")])
def test_monai_ignored_pixels_do_not_change_the_loss(case):
  base, alt = (np.asarray(_ignore_loss(case, x)) for x in case["inputs"])
  np.testing.assert_allclose(base, alt, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(base, case["monai"][0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", list(_ignore_params("no_ignore_behavior")))
def test_monai_no_ignore_index_is_finite_and_equal(case):
  kw = case["kwargs"]
  x = np.asarray(case["inputs"][0], np.float32)
  t = np.asarray(case["target"], np.float32)
  if case["loss"] == "FocalLoss":
    got = J.sigmoid_focal_loss(x, t, axis=1, alpha=None)
  else:
    fn = {"DiceLoss": J.dice_loss, "TverskyLoss": J.tversky_loss}[case["loss"]]
    got = fn(x, t, axis=1, activation="sigmoid" if kw.get("sigmoid") else None)
  assert np.isfinite(got)
  np.testing.assert_allclose(got, case["monai"][0], rtol=1e-5, atol=1e-6)


def test_monai_focal_ignored_pixels_contribute_zero_per_element():
  (case,) = _ignore_case("loss_ignore_zero_contribution", "FocalLoss")
  got = np.asarray(_ignore_loss(case, case["inputs"][0]))
  ignored = np.broadcast_to(np.asarray(case["target"]) == 255, got.shape)
  assert np.all(got[ignored] == 0.0)
  np.testing.assert_allclose(got, case["monai"][0], rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------
# MONAI's test_input_warnings: one channel, where MONAI warns and ignores the
# option. jaxloss raises a ValueError instead for include_background=False and
# softmax (a single channel has no background to exclude, and a softmax over one
# channel is constant); to_onehot_y has no jaxloss counterpart: the float target
# is used as it is, as MONAI does.
# ---------------------------------------------------------------------------
OVERLAP = {"DiceLoss": "dice_loss", "GeneralizedDiceLoss": "generalized_dice_loss",
           "TverskyLoss": "tversky_loss"}


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"])
                                  for c in DATA["input_warning_cases"]])
def test_monai_single_channel_options(case):
  fn = getattr(J, OVERLAP[case["loss"]])
  x = np.asarray(case["input"], np.float32)
  t = np.asarray(case["target"], np.float32)
  kw = case["kwargs"]
  if "to_onehot_y" in kw:
    np.testing.assert_allclose(fn(x, t, axis=1), case["monai"], atol=1e-6)
    return
  options = ({"include_background": False} if "include_background" in kw
             else {"activation": "softmax"})
  # MONAI warns and ignores the option here; jaxloss refuses it.
  with pytest.raises(ValueError, match=next(iter(options))):
    fn(x, t, axis=1, **options)
