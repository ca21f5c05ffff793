"""Surface metrics (Hausdorff, average surface distance, surface Dice) against MONAI 1.6.1.

The MONAI values are recorded on random 2-D and 3-D blobs by
``peer_data/record_monai_surface_cases.py`` (CI needs no torch). Wherever both
masks of an (image, class) are non-empty the values must agree to float32
rounding; the empty cases follow jaxloss's documented rules, and the recorded
MONAI values there are checked to be the NaN/inf that the docstrings say.
"""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

DATA = json.loads(pathlib.Path(__file__).with_name("peer_data").joinpath(
    "monai_surface_cases.json").read_text())
assert DATA["monai_version"] == "1.6.1"
CASES = {c["id"]: c for c in DATA["cases"]}
INF = float("inf")


@functools.partial(jax.jit, static_argnames=("num_classes", "axis", "include_background",
                                             "spacing"))
def _metrics(p, y, tolerance, *, num_classes=None, axis=-1, include_background=False,
             spacing=None):
  """Every metric and option combination the recording covers, in one program."""
  kw = {"num_classes": num_classes, "axis": axis, "include_background": include_background,
        "spacing": spacing}
  hd = jaxloss.hausdorff_distance
  asd = jaxloss.average_surface_distance
  nsd = jaxloss.surface_dice
  return {str(k): v for k, v in {
      ("hd", None, False): hd(p, y, **kw), ("hd", None, True): hd(p, y, directed=True, **kw),
      ("hd", 95, False): hd(p, y, percentile=95, **kw),
      ("hd", 95, True): hd(p, y, percentile=95, directed=True, **kw),
      ("hd", 50, False): hd(p, y, percentile=50, **kw),
      ("asd", False): asd(p, y, **kw), ("asd", True): asd(p, y, symmetric=True, **kw),
      ("nsd", 1.0): nsd(p, y, tolerance=1.0, **kw), ("nsd", 2.0): nsd(p, y, tolerance=2.0, **kw),
      ("nsd", "vector"): nsd(p, y, tolerance=tolerance, **kw),
  }.items()}


def _decode(case, key):
  return np.array([int(ch) for ch in case[key]], np.int32).reshape(case["shape"])


def _monai(values):
  return np.array([[np.nan if v is None else float(v) for v in row] for row in values])


def _emptiness(p, y, num_classes, include_background):
  """``[B, C']`` bools: prediction empty, label empty."""
  axes = tuple(range(1, p.ndim))
  ep = np.stack([~(p == c).any(axes) for c in range(num_classes)], 1)
  ey = np.stack([~(y == c).any(axes) for c in range(num_classes)], 1)
  return (ep, ey) if include_background else (ep[:, 1:], ey[:, 1:])


def _spacing(case):
  s = case["spacing"]
  return tuple(s) if isinstance(s, list) else s


# Two sets in the fast run (3-D anisotropic with background; 2-D with empty classes), the
# other four (one compile each) in the slow run.
FAST_CASES = {"3d-b", "2d-empty"}


@pytest.mark.parametrize("case_id", [pytest.param(c, marks=() if c in FAST_CASES
                                                  else pytest.mark.slow) for c in sorted(CASES)])
def test_equals_monai_on_random_blobs_and_follows_the_empty_rules(case_id):
  case = CASES[case_id]
  p, y = _decode(case, "predictions"), _decode(case, "labels")
  c, bg = case["num_classes"], case["include_background"]
  vector = case["surface_dice"][2]["options"]["tolerance"]
  got = _metrics(p, y, np.asarray(vector, np.float32), num_classes=c, include_background=bg,
                 spacing=_spacing(case))
  p_empty, y_empty = _emptiness(p, y, c, bg)
  both, one = p_empty & y_empty, p_empty ^ y_empty
  assert both.any() == one.any() == (case_id == "2d-empty")
  recorded = (
      [(("hd", r["options"]["percentile"], r["options"]["directed"]), r["monai"])
       for r in case["hausdorff_distance"]]
      + [(("asd", r["options"]["symmetric"]), r["monai"])
         for r in case["average_surface_distance"]]
      + [(("nsd", r["options"]["tolerance"] if not isinstance(r["options"]["tolerance"], list)
           else "vector"), r["monai"]) for r in case["surface_dice"]])
  assert len(recorded) == len(got)
  for key, values in recorded:
    monai, ours = _monai(values), np.asarray(got[str(key)])
    assert ours.shape == monai.shape == both.shape, key
    full = ~(both | one)
    np.testing.assert_allclose(ours[full], monai[full], rtol=2e-6, atol=1e-6, err_msg=str(key))
    # The empty rules, and what MONAI gives there instead (its docstring: NaN or inf).
    if key[0] == "nsd":
      np.testing.assert_array_equal(ours[both], 1.0)
      np.testing.assert_array_equal(ours[one], 0.0)
      np.testing.assert_array_equal(monai[one], 0.0)
    else:
      np.testing.assert_array_equal(ours[both], 0.0)
      np.testing.assert_array_equal(ours[one], INF)
      percentile = key[0] == "hd" and key[1] is not None
      # MONAI: inf when one mask is empty; a percentile interpolates inf - inf = NaN.
      assert np.isnan(monai[one]).all() if percentile else (monai[one] == INF).all()
    assert np.isnan(monai[both]).all()


# The remaining tests share one shape, [3, 9, 11] with C = 3, so that they share compiles.
def _random_ids(seed):
  rng = np.random.default_rng(seed)
  # Blocky random ids (3x3 cells upsampled), so that classes form regions with surfaces.
  cells = rng.integers(0, 3, (3, 3, 4))
  return np.repeat(np.repeat(cells, 3, 1), 3, 2)[:, :9, :11].astype(np.int32)


P, Y = _random_ids(1), _random_ids(2)
TOL = np.array([1.0, 1.5], np.float32)
EYE = np.eye(3, dtype=np.float32)


def test_integer_ids_one_hot_and_bool_masks_agree():
  ids = _metrics(P, Y, TOL, num_classes=3)
  floats = _metrics(EYE[P], EYE[Y], TOL)
  # integer ids against bool masks with the class axis at 1.
  mixed = _metrics(P, np.moveaxis(EYE[Y] == 1, -1, 1), TOL, num_classes=3, axis=1)
  for key in ids:
    assert np.isfinite(np.asarray(ids[key])).all(), key
    np.testing.assert_array_equal(np.asarray(floats[key]), np.asarray(ids[key]), err_msg=key)
    np.testing.assert_array_equal(np.asarray(mixed[key]), np.asarray(ids[key]), err_msg=key)


def test_empty_rules_on_a_hand_made_case():
  """Image 0: class 1 absent from both, class 2 from the label; image 1: class 1 absent
  from the prediction, class 2 one voxel in each."""
  p, y = np.zeros_like(P), np.zeros_like(Y)
  p[0, 2:6, 2:6] = 2
  y[1, 4:7, 3:9] = 1
  p[1, 0, 0] = y[1, 8, 10] = 2
  p[2], y[2] = P[2], Y[2]
  got = _metrics(p, y, TOL, num_classes=3)
  for key, value in got.items():
    value = np.asarray(value)
    expected = [[1.0, 0.0], [0.0]] if "nsd" in key else [[0.0, INF], [INF]]
    np.testing.assert_array_equal(value[0], expected[0], err_msg=key)
    np.testing.assert_array_equal(value[1, :1], expected[1], err_msg=key)
    # one voxel each, at (0, 0) and (8, 10): each is its mask's whole surface.
    want = 0.0 if "nsd" in key else np.hypot(8, 10)
    np.testing.assert_allclose(value[1, 1], want, rtol=1e-6, err_msg=key)
    np.testing.assert_array_equal(value[2], np.asarray(_metrics(P, Y, TOL, num_classes=3)[key])[2])


def test_invalid_labels_and_non_binary_masks_give_nan_for_that_image_only():
  clean = _metrics(P, Y, TOL, num_classes=3)
  y_bad, p_bad = Y.copy(), P.copy()
  y_bad[0, 4, 4] = 3  # out of range
  p_bad[2, 0, 0] = -1
  got = _metrics(p_bad, y_bad, TOL, num_classes=3)
  for key in got:
    value = np.asarray(got[key])
    assert np.isnan(value[[0, 2]]).all(), key
    np.testing.assert_array_equal(value[1], np.asarray(clean[key])[1], err_msg=key)
  soft = EYE[Y].copy()
  soft[1, 3, 3, 2] = 0.5  # image 1, class 2: neither 0 nor 1
  got = _metrics(EYE[P], soft, TOL)
  for key in got:
    value = np.asarray(got[key])
    assert np.isnan(value[1, 1]), key
    np.testing.assert_array_equal(np.delete(value.reshape(-1), 3),
                                  np.delete(np.asarray(clean[key]).reshape(-1), 3), err_msg=key)


_TRACED = jax.jit(lambda p, y, q, t: (
    jaxloss.hausdorff_distance(p, y, num_classes=3, percentile=q),
    jaxloss.surface_dice(p, y, num_classes=3, tolerance=t)))


def test_traced_percentile_and_tolerance_and_percentile_ends():
  static = _metrics(P, Y, TOL, num_classes=3)
  hd100, nsd = _TRACED(P, Y, np.float32(100), np.float32(1.0))
  np.testing.assert_array_equal(hd100, static[str(("hd", None, False))])
  np.testing.assert_array_equal(nsd, static[str(("nsd", 1.0))])
  hd95, _ = _TRACED(P, Y, np.float32(95), np.float32(1.0))
  np.testing.assert_allclose(hd95, static[str(("hd", 95, False))], rtol=1e-6)
  # percentile 0: the smallest distance of each direction, the larger of the two (MONAI
  # treats 0 as None, the maximum).
  hd0, _ = _TRACED(P, Y, np.float32(0), np.float32(1.0))
  assert (np.asarray(hd0) <= np.asarray(hd95)).all()
  assert (np.asarray(hd0) < np.asarray(hd100)).any()


@pytest.mark.parametrize(("call", "match"), [
    (lambda p, y: jaxloss.hausdorff_distance(p, y), "`num_classes`"),
    (lambda p, y: jaxloss.hausdorff_distance(p, y, num_classes=3, percentile=101), "`percentile`"),
    (lambda p, y: jaxloss.hausdorff_distance(p, y, num_classes=3, directed=1), "`directed`"),
    (lambda p, y: jaxloss.average_surface_distance(p, y, num_classes=3, symmetric="yes"),
     "`symmetric`"),
    (lambda p, y: jaxloss.hausdorff_distance(p, y[:, :-1], num_classes=3), "`labels`"),
    (lambda p, y: jaxloss.hausdorff_distance(p[0], y[0], num_classes=3), "`predictions`"),
    (lambda p, y: jaxloss.hausdorff_distance(p, y, num_classes=3, spacing=(1.0,)), "`spacing`"),
    (lambda p, y: jaxloss.hausdorff_distance(p, y, num_classes=3, spacing=-1.0), "`spacing`"),
    (lambda p, y: jaxloss.surface_dice(p, y, num_classes=3, tolerance=-1.0), "`tolerance`"),
    (lambda p, y: jaxloss.surface_dice(p, y, num_classes=3, tolerance=[1.0, 2.0, 3.0]),
     "`tolerance`"),
    (lambda p, y: jaxloss.surface_dice(p, y, num_classes=3, tolerance=[1.0, np.inf]),
     "`tolerance`"),
    (lambda p, y: jaxloss.surface_dice(p, y, num_classes=1, include_background=False,
                                       tolerance=1.0), "`include_background`"),
    (lambda p, y: jaxloss.surface_dice(np.eye(3)[p], np.eye(3)[y], num_classes=4,
                                       tolerance=1.0), "`num_classes`"),
])
def test_errors_name_the_argument(call, match):
  p = np.zeros((2, 6, 7), np.int32)
  with pytest.raises((ValueError, TypeError), match=match):
    jax.eval_shape(lambda: call(p, p))  # raised while tracing: nothing runs


@pytest.mark.slow
def test_export_lowers_for_cpu_cuda_tpu():
  case = CASES["3d-a"]
  p, y = _decode(case, "predictions"), _decode(case, "labels")

  def f(p, y):
    return (jaxloss.hausdorff_distance(p, y, num_classes=3, percentile=95),
            jaxloss.average_surface_distance(p, y, num_classes=3, symmetric=True),
            jaxloss.surface_dice(p, y, num_classes=3, tolerance=1.0, spacing=(1.0, 0.5, 2.0)))

  specs = [jax.ShapeDtypeStruct(p.shape, jnp.int32)] * 2
  exported = jax.export.export(jax.jit(f), platforms=("cpu", "cuda", "tpu"))(*specs)
  assert exported.platforms == ("cpu", "cuda", "tpu")
  for got, want in zip(exported.call(p, y), jax.jit(f)(p, y), strict=True):
    np.testing.assert_array_equal(got, want)
