"""The hostile half of the loss contract, generated for every registered loss.

``test_contract.py`` checks the ordinary promises (jit, vmap, reductions,
sharding ...); this file generates the unusual-but-legal and the hostile inputs
of issue 12 from the registry's fields (see ``loss_registry.LossCase``):

* every integer label dtype (bool, uint8, uint16, int8, int16, int32, int64)
  gives the int32 value and gradient (``label_arg``);
* ``ignore_index`` inside and outside ``[0, C)`` equals slicing the ignored
  pixels away, and NaN/inf at ignored pixels is harmless (``ignore_index``);
  unignored labels outside ``[0, C)`` (also for C > 32) make the loss NaN;
* ``where`` of every documented shape equals slicing, and NaN/inf under it
  leaves the value and the gradient w.r.t. *every* differentiable argument
  (float inputs and ``weights``) clean (``layout``);
* an empty batch, C = 1 and single-pixel inputs;
* per-element finiteness at the float32 limit (``extreme_inputs``);
* NaN, inf and array-valued scalar options raise naming the option
  (``scalar_options``);
* :func:`jaxloss.checked` names every array input holding an unmasked NaN.

Cost: calls at the shapes of ``test_contract.py`` (``BATCH = 6``, the
registry's inputs) are eager, so they reuse the primitives that file has
compiled (~10-40 ms a call); calls at new shapes (B = 0, one pixel, C = 1,
C = 40, sliced inputs, x64, ``checked``) are jitted once (~0.1-0.3 s), which
is 5-10x cheaper than compiling them op by op.
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from loss_registry import LossCase, all_cases, by_name

import jaxloss

CASES = all_cases()
LABEL_CASES = [c for c in CASES if c.label_arg is not None]
IGNORE_CASES = [c for c in CASES if c.ignore_index]
OPTION_CASES = [c for c in CASES if c.scalar_options]
BATCH = 6
SCALAR_REDUCTIONS = ("sum", "mean", "weighted_mean", "sum_by_nonzero_weights")
LABEL_DTYPES = (np.uint8, np.uint16, np.int8, np.int16)
POISONS = (np.nan, np.inf, -np.inf)


# --------------------------------------------------------------------------- helpers


def _rng(case: LossCase, salt: int = 0) -> np.random.Generator:
  return np.random.default_rng([sum(map(ord, case.name)), 12, salt])


def _call(case: LossCase, args, **kwargs) -> jax.Array:
  """The case's loss; call-time options override the case's own."""
  return case.fn(*args, **{**case.kwargs, **kwargs})


def _float_args(args) -> list[int]:
  return [i for i, a in enumerate(args) if jnp.issubdtype(jnp.result_type(a), jnp.floating)]


def _value_and_grads(case: LossCase, args, weights=None, **kwargs):
  """The loss and its gradients w.r.t. every float input (a list) and ``weights``."""
  idx = _float_args(args)

  def f(floats, w):
    full = list(args)
    for i, a in zip(idx, floats, strict=True):
      full[i] = a
    return _call(case, full, weights=w, **kwargs)

  floats = [jnp.asarray(args[i]) for i in idx]
  if weights is None:
    value, grads = jax.value_and_grad(lambda fl: f(fl, None))(floats)
    return value, grads, None
  value, (grads, grad_w) = jax.value_and_grad(f, argnums=(0, 1))(floats, jnp.asarray(weights))
  return value, grads, grad_w


def _contract_mask(batch: int) -> np.ndarray:
  """``test_contract``'s per-image mask (whose eager primitives it has compiled)."""
  m = np.ones(batch, bool)
  m[[0, batch - 2]] = False
  return m


def _weights(batch: int, rng: np.random.Generator) -> np.ndarray:
  w = rng.uniform(0.5, 2.0, size=batch).astype(np.float32)
  w[1] = 0.0
  return w


def _num_classes(case: LossCase, args) -> int:
  if case.num_classes is not None:
    return case.num_classes
  return args[0].shape[case.class_axis]


def _loss_shape(case: LossCase, args) -> tuple[int, ...]:
  """What ``where`` and ``weights`` index: the ``reduction="none"`` shape (``[B]`` per image)."""
  if case.scalar_only:
    return (args[0].shape[0],)
  out = jax.eval_shape(lambda *a: _call(case, a, reduction="none"), *args)
  return tuple(out.shape)


def _class_options(case: LossCase, c_old: int, c_new: int) -> dict:
  """The case's ``[C]`` options (class weights, alpha, pos_weight ...) resized to ``c_new``."""
  options = dict(case.fn.keywords) if isinstance(case.fn, functools.partial) else {}
  options.update(case.kwargs)
  return {k: np.resize(v, c_new) for k, v in options.items()
          if isinstance(v, np.ndarray) and v.shape == (c_old,)}


def _input_names(case: LossCase, args) -> tuple[str, ...]:
  if case.input_names is not None:
    return case.input_names
  return tuple(inspect.signature(case.fn).parameters)[:len(args)]


def _close(a, b, what: str, rtol: float = 1e-6, atol: float = 1e-7) -> None:
  np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol,
                             atol=atol, err_msg=what)


def _expand_to(m: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """A mask over leading axes broadcast to ``shape``."""
  return np.broadcast_to(m.reshape(m.shape + (1,) * (len(shape) - m.ndim)), shape)


def _dependents_masked(case: LossCase, args, i: int, keep: np.ndarray) -> np.ndarray | None:
  """Where input ``i`` feeds only masked losses (``keep`` False), or None if it is not aligned.

  The losses ``keep`` indexes (``_loss_shape``) line up with the leading axes of
  every input, except for ``layout="image_class"``: ``[B, C]`` against
  ``[B, ..., C]``, where a logit under a softmax feeds every class of its
  pixel, and an integer label the targets of every class.
  """
  a = np.asarray(args[i])
  if case.layout == "image_class":
    softmax = i == 0 and case.kwargs.get("activation") == "softmax"
    if softmax or a.ndim < args[0].ndim:  # logits under a softmax, or integer labels
      return _expand_to(~keep.any(-1), a.shape)
    per_class = keep.reshape((keep.shape[0],) + (1,) * (a.ndim - 2) + (keep.shape[-1],))
    return ~np.broadcast_to(per_class, a.shape)
  if a.shape[:keep.ndim] != keep.shape:
    return None
  return _expand_to(~keep, a.shape)


def _fill_cyclic(a: np.ndarray, where: np.ndarray, values) -> np.ndarray:
  out = a.copy()
  n = int(where.sum())
  out[where] = np.resize(np.asarray(values, a.dtype), n)
  return out


@pytest.fixture(params=CASES, ids=str)
def case(request) -> LossCase:
  return request.param


# --------------------------------------------------------------------------- integer labels


def _fits(labels: np.ndarray, dtype) -> bool:
  info = np.iinfo(dtype)
  return bool(labels.min() >= info.min and labels.max() <= info.max)


@pytest.mark.parametrize("case", LABEL_CASES, ids=str)
def test_every_integer_label_dtype_equals_int32(case):
  """bool, uint8, uint16, int8, int16 and (under x64) int64 labels give the int32 result.

  With ``ignore_index``, also for k = 255 present in uint8/int16 labels, -100 in int8
  labels, and -100 next to uint8 labels (which never match it).
  """
  rng = _rng(case)
  args = list(case.make_inputs(rng, BATCH, np.float32))
  w, m = _weights(BATCH, rng), _contract_mask(BATCH)
  la = case.label_arg
  y = np.asarray(args[la]).astype(np.int64)
  configs = [(None, y, LABEL_DTYPES)]
  if case.ignore_index:
    hole = rng.uniform(size=y.shape) < 0.25
    # -100 without holes: unsigned labels next to a negative ignore_index never match it.
    configs += [(255, np.where(hole, 255, y), (np.uint8, np.int16)),
                (-100, np.where(hole, -100, y), (np.int8,)), (-100, y, (np.uint8,))]

  def run(labels, ignore):
    a = list(args)
    extra = {} if ignore is None else {"ignore_index": ignore}
    return jax.value_and_grad(lambda x: _call(case, [x, *a[1:la], labels, *a[la + 1:]],
                                              weights=w, where=m, reduction="weighted_mean",
                                              **extra))(a[0])

  def compare(ref, got, what, exact=True):
    for r, g, part in zip(ref, got, ("value", "gradient"), strict=True):
      r, g = np.asarray(r, np.float64), np.asarray(g, np.float64)
      same = (np.array_equal(r, g, equal_nan=True) if exact else
              np.allclose(r, g, rtol=1e-6, atol=1e-7, equal_nan=True))
      if not same:
        failures.append(f"{what}: {part} differs from int32")

  failures = []
  for ignore, labels, dtypes in configs:
    ref = run(labels.astype(np.int32), ignore)
    for dtype in dtypes:
      if _fits(labels, dtype):
        compare(ref, run(labels.astype(dtype), ignore),
                f"{np.dtype(dtype).name} ignore_index={ignore}")
  # bool labels hold class ids 0 and 1: compare on labels clipped to {0, 1}.
  y01 = np.minimum(y, 1)
  compare(run(y01.astype(np.int32), None), run(y01.astype(bool), None), "bool")
  with jax.enable_x64(True):
    # test_contract's x64 configuration (float64 inputs, "mean", d/d input 0), whose
    # primitives it has compiled, with int32 and int64 labels.
    a64 = list(case.make_inputs(_rng(case), BATCH, np.float64))
    def run64(labels):
      return jax.value_and_grad(lambda x: _call(
          case, [x, *a64[1:la], labels, *a64[la + 1:]], reduction="mean"))(a64[0])

    compare(run64(y.astype(np.int32)), run64(y), "int64 (x64)")
  assert not failures, failures


def _bad_label_args(case: LossCase, args, bad: int):
  a = list(args)
  y = np.asarray(a[case.label_arg]).copy()
  y.reshape(-1)[y[0].size // 2] = bad  # one pixel of image 0
  a[case.label_arg] = y
  return a, np.unravel_index(y[0].size // 2, y.shape)


@pytest.mark.parametrize("case", LABEL_CASES, ids=str)
def test_out_of_range_labels_make_the_loss_nan(case):
  """-1, C and C + 40 (also next to an ignore_index, and -1 with C = 40 > 32) give NaN."""
  rng = _rng(case, 1)
  args = case.make_inputs(rng, BATCH, np.float32)
  c = _num_classes(case, args)
  failures = []
  configs = [(bad, {}) for bad in (-1, c, c + 40)]
  if case.ignore_index:
    configs += [(-1, {"ignore_index": 255}), (c, {"ignore_index": -100})]
  for bad, extra in configs:
    a, at = _bad_label_args(case, args, bad)
    value = _call(case, a, reduction="mean", **extra)
    if not np.isnan(value):
      failures.append(f"label {bad} {extra}: mean = {float(value)}")
    if not case.scalar_only:
      per = np.asarray(_call(case, a, reduction="none", **extra))
      # Its element, or for per-image losses its image (a row of [B] or [B, C]).
      own = per[at[:per.ndim]] if case.layout == "element" else per[0]
      if not np.any(np.isnan(own)):
        failures.append(f"label {bad} {extra}: reduction='none' gives {own} for its element")
  if case.class_axis is not None:
    wide = 40  # > 32: the gather path, where a negative index used to wrap around
    x = np.asarray(args[0])
    more = rng.normal(size=x.shape[:-1] + (wide - c,)).astype(np.float32)
    a = [np.concatenate([x, more], case.class_axis), *args[1:]]
    f = jax.jit(lambda a: _call(case, a, reduction="mean", **_class_options(case, c, wide)))
    for bad in (-1, wide):
      value = f(_bad_label_args(case, a, bad)[0])
      if not np.isnan(value):
        failures.append(f"C = {wide}, label {bad}: mean = {float(value)}")
  assert not failures, failures


# --------------------------------------------------------------------------- ignore_index


def _ignore_pattern(case: LossCase, labels: np.ndarray, rng) -> tuple[np.ndarray, int]:
  """A third of each image's pixels ignored, the same number in every image."""
  pixels = labels[0].size
  n_ignored = max(1, round(pixels / 3))
  ign = np.zeros((labels.shape[0], pixels), bool)
  for row in ign:
    row[rng.permutation(pixels)[:n_ignored]] = True
  return ign.reshape(labels.shape), pixels - n_ignored


def _compact(case: LossCase, args, ign: np.ndarray, kept: int):
  """Every input with the label shape as its leading axes, ignored pixels sliced away.

  ``[B, ...pixels, *rest]`` becomes ``[B, kept, *rest]``: per image (or per
  element) the loss of the remaining pixels, whatever it sums over.
  """
  out = []
  for a in args:
    a = np.asarray(a)
    if a.shape[:ign.ndim] == ign.shape:
      rest = a.shape[ign.ndim:]
      flat = a.reshape((ign.shape[0], -1) + rest)
      out.append(flat[~ign.reshape(ign.shape[0], -1)].reshape((ign.shape[0], kept) + rest))
    else:
      out.append(a)
  return out


@pytest.mark.parametrize("case", IGNORE_CASES, ids=str)
def test_ignore_index_equals_slicing_the_pixels_away(case):
  """``ignore_index`` = k, inside [0, C) (k = 0) or outside (255, -100), equals the loss of
  the kept pixels alone, for every reduction; NaN/inf predictions at ignored pixels change
  neither the value nor the gradient, which is 0 there."""
  assert case.class_axis in (None, -1), "the compaction assumes the class axis last"
  rng = _rng(case, 2)
  args = case.make_inputs(rng, BATCH, np.float32)
  la = case.label_arg
  y = np.asarray(args[la])
  c = _num_classes(case, args)
  ign, kept = _ignore_pattern(case, y, rng)
  w, everywhere = _weights(BATCH, rng), np.ones(BATCH, bool)
  # Kept labels avoid class 0 for k = 0 (inside the range), else any class.
  y_inside = np.where(y == 0, rng.integers(1, c, size=y.shape), y).astype(y.dtype)
  x_in = np.asarray(args[0])
  pixel_mask = _expand_to(ign, x_in.shape)
  poisoned_x = _fill_cyclic(x_in, pixel_mask, POISONS)
  reductions = SCALAR_REDUCTIONS if case.scalar_only else ("none",) + SCALAR_REDUCTIONS

  @jax.jit
  def sliced(ref_args):  # new shapes: every reduction in one compiled program
    return {r: _call(case, ref_args, reduction=r, **({} if r == "none" else {"weights": w}))
            for r in reductions}

  failures = []
  for k, kept_labels in ((0, y_inside), (255, y), (-100, y)):
    a = list(args)
    a[la] = np.where(ign, k, kept_labels).astype(y.dtype)
    refs = sliced(_compact(case, [*args[:la], kept_labels, *args[la + 1:]], ign, kept))
    for r in reductions:
      # weights and an all-True where: test_contract's eager configuration.
      extra = {} if r == "none" else {"weights": w, "where": everywhere}
      got = np.asarray(_call(case, a, ignore_index=k, reduction=r, **extra))
      ref = np.asarray(refs[r])
      if r == "none" and case.layout == "element":
        if not np.all(got[ign] == 0):
          failures.append(f"k={k} none: ignored elements {got[ign]} are not 0")
        got = got[~ign].reshape(ref.shape)
      if not np.allclose(got, ref, rtol=2e-6, atol=1e-7):
        failures.append(f"k={k} {r}: {got} != sliced {ref}")

    def value_and_grad(x, a=a, k=k):
      return jax.value_and_grad(lambda x: _call(case, [x, *a[1:]], weights=w, where=everywhere,
                                                ignore_index=k, reduction="weighted_mean"))(x)

    clean, dirty = value_and_grad(x_in), value_and_grad(poisoned_x)
    if not np.allclose(dirty[0], clean[0], rtol=1e-6):
      failures.append(f"k={k}: NaN/inf at ignored pixels changes the value "
                      f"{float(clean[0])} -> {float(dirty[0])}")
    for name, g in (("clean", clean[1]), ("poisoned", dirty[1])):
      if not np.all(np.asarray(g)[pixel_mask] == 0):
        failures.append(f"k={k}: {name} gradient at ignored pixels is not 0")
    if not np.allclose(dirty[1], clean[1], rtol=1e-6, atol=1e-7, equal_nan=False):
      failures.append(f"k={k}: NaN/inf at ignored pixels changes the gradient elsewhere")
  assert not failures, failures


@pytest.mark.parametrize("loss", [jaxloss.dice_loss, jaxloss.jaccard_loss, jaxloss.tversky_loss,
                                  jaxloss.generalized_dice_loss], ids=lambda f: f.__name__)
def test_overlap_ignore_index_inside_class_range_equals_slicing(loss):
  """Issue 12's example: ignoring class 0 leaves its pixels out of every sum."""
  p = np.array([[[0.6, 0.4], [0.6, 0.4], [0.0, 1.0], [0.0, 1.0]]], np.float32)
  y = np.array([[0, 0, 1, 1]], np.int32)
  got = loss(p, y, ignore_index=0, reduction="none")
  np.testing.assert_allclose(got, loss(p[:, 2:], y[:, 2:], reduction="none"), atol=1e-6)
  if loss is jaxloss.dice_loss:
    np.testing.assert_allclose(got, [[0.0, 0.0]], atol=1e-6)


# --------------------------------------------------------------------------- masks


def _masks(shape: tuple[int, ...], rng, per_image: bool = True) -> dict[str, np.ndarray]:
  """``where`` of the documented shapes beyond ``[B]`` (which ``per_image`` adds): the
  full loss shape (per element, per (image, class)), and the same rank with size-1 axes."""
  b = shape[0]
  image = _contract_mask(b)
  masks = {"[B]": image} if per_image else {}
  if len(shape) > 1:
    full = rng.uniform(size=shape) < 0.65
    full[0] = False  # one image wholly masked (its inputs may then be NaN, softmax or not)
    full[2] = True
    masks[f"full {shape}"] = full
    masks[f"{(b,) + (1,) * (len(shape) - 1)}"] = image.reshape((b,) + (1,) * (len(shape) - 1))
  return masks


def test_where_of_every_documented_shape_equals_slicing(case):
  """Kept entries of ``reduction="none"`` equal the unmasked loss's; masked ones are 0;
  ``"mean"`` divides by the kept count. With a per-(image, class) mask and a softmax,
  masking a class must not change the other classes. (``[B]``: ``test_contract``.)"""
  rng = _rng(case, 3)
  args = case.make_inputs(rng, BATCH, np.float32)
  shape = _loss_shape(case, args)
  if case.scalar_only or len(shape) == 1:
    pytest.skip("the only documented mask is per example ([B]): test_contract slices it")
  masks = _masks(shape, rng, per_image=False)
  full_name = f"full {shape}"

  @jax.jit
  def run(args, masks):  # new mask shapes: one compiled program
    none = {name: _call(case, args, where=m, reduction="none") for name, m in masks.items()}
    mean = _call(case, args, where=masks[full_name], reduction="mean")
    return _call(case, args, reduction="none"), none, mean

  full, results, mean = run(list(args), masks)
  full = np.asarray(full)
  failures = []
  for name, m in masks.items():
    keep = _expand_to(m, full.shape)
    got = np.asarray(results[name])
    if not np.all(got[~keep] == 0):
      failures.append(f"where {name}: masked entries {got[~keep]} are not 0")
    if not np.allclose(got[keep], full[keep], rtol=2e-6, atol=1e-7):
      failures.append(f"where {name}: kept entries {got[keep]} != unmasked {full[keep]}")
  keep = masks[full_name]
  if not np.allclose(mean, full[keep].sum() / keep.sum(), rtol=2e-6):
    failures.append(f"where {full_name}: mean {float(mean)} != {full[keep].sum() / keep.sum()}")
  assert not failures, failures


@pytest.mark.parametrize("batch", [3, 4], ids=["B=C", "B!=C"])
@pytest.mark.parametrize("name", ["sigmoid_bce_dice_loss", "softmax_ce_dice_loss"])
def test_batch_level_dice_composition_reads_where_per_image(name, batch):
  """With ``reduce_axes`` over the batch, a composition's ``[B]`` mask still masks images
  (never read as a class mask when B == C, never refused when B != C): it equals slicing
  the masked images away."""
  case = by_name(name)
  rng = _rng(case, 10)
  args = case.make_inputs(rng, batch, np.float32)
  assert _num_classes(case, args) == 3
  m = np.ones(batch, bool)
  m[1] = False
  batch_dice = functools.partial(_call, case, reduce_axes=(0, 1, 2), reduction="mean")
  masked, sliced = jax.jit(lambda a, s: (batch_dice(a, where=m), batch_dice(s)))(
      list(args), [np.asarray(a)[m] for a in args])
  np.testing.assert_allclose(masked, sliced, rtol=2e-6)


def test_nan_and_inf_under_the_mask_leave_every_gradient_clean(case):
  """NaN, inf and -inf in every float input, NaN/inf weights and out-of-range labels, all
  under the mask: the value and the gradients w.r.t. every float input and ``weights``
  equal the clean run's, and are exactly 0 at the masked positions."""
  rng = _rng(case, 4)
  args = case.make_inputs(rng, BATCH, np.float32)
  shape = _loss_shape(case, args)
  c = _num_classes(case, args) if case.label_arg is not None else None
  failures = []
  # The richest documented mask: the full loss shape (a wholly masked image, and single
  # elements or (image, class) entries), else [B]. test_contract poisons a [B] mask and
  # [B] weights for input 0 and the weights.
  masks = _masks(shape, rng)
  masks = {name: m for name, m in masks.items() if name.startswith("full")} or masks
  for name, m in masks.items():
    keep = _expand_to(m, shape)
    w = rng.uniform(0.5, 2.0, size=m.shape).astype(np.float32)
    dirty_w = _fill_cyclic(w, ~m, POISONS)
    dirty, under = list(args), {}
    for i, a in enumerate(args):
      masked = _dependents_masked(case, args, i, keep)
      if masked is None or not masked.any():
        continue
      under[i] = masked
      if i == case.label_arg:
        dirty[i] = _fill_cyclic(np.asarray(a), masked, (-1, c + 40, c))
      elif np.issubdtype(np.asarray(a).dtype, np.floating):
        dirty[i] = _fill_cyclic(np.asarray(a), masked, POISONS)
    # New gradients and mask shapes: compiled once, run clean and poisoned.
    run = jax.jit(lambda a, w, m=m: _value_and_grads(case, a, w, where=m,
                                                     reduction="weighted_mean"))
    v0, g0, gw0 = run(list(args), w)
    v1, g1, gw1 = run(dirty, dirty_w)
    if not np.allclose(v1, v0, rtol=1e-6):
      failures.append(f"where {name}: value {float(v0)} -> {float(v1)}")
    names = _input_names(case, args)
    for i, clean, got in zip(_float_args(args), g0, g1, strict=True):
      got, clean = np.asarray(got), np.asarray(clean)
      if i in under and not np.all(got[under[i]] == 0):
        failures.append(f"where {name}: gradient of `{names[i]}` under the mask is not 0 "
                        f"({np.unique(got[under[i]])[:4]})")
      if not np.allclose(got, clean, rtol=1e-6, atol=1e-7):
        failures.append(f"where {name}: gradient of `{names[i]}` differs from the clean run")
    gw1 = np.asarray(gw1)
    if not np.all(gw1[~m] == 0):
      failures.append(f"where {name}: gradient of `weights` under the mask is "
                      f"{np.unique(gw1[~m])[:4]}")
    if not np.allclose(gw1, gw0, rtol=1e-6, atol=1e-7):
      failures.append(f"where {name}: gradient of `weights` differs from the clean run")
  assert not failures, failures


# --------------------------------------------------------------------------- degenerate sizes


def test_empty_batch_is_zero_with_zero_gradient(case):
  """B = 0: every scalar reduction is 0, with and without weights and where, with an empty
  gradient (w.r.t. every float input and the weights); ``"none"`` is empty."""
  rng = _rng(case, 5)
  args = case.make_inputs(rng, 0, np.float32)
  w, m = np.ones(0, np.float32), np.ones(0, bool)
  configs = {f"{r} weights+where": {"reduction": r, "weights": w, "where": m}
             for r in SCALAR_REDUCTIONS}
  configs.update({"mean": {}, "weighted_mean weights": {"reduction": "weighted_mean",
                                                         "weights": w},
                  "sum_by_nonzero_weights where": {"reduction": "sum_by_nonzero_weights",
                                                   "where": m}})
  if not case.scalar_only:
    configs["none"] = {"reduction": "none"}
  failures = []
  for name, kw in list(configs.items()):  # traced first: each failure reported on its own
    try:
      jax.eval_shape(lambda a, kw=kw: _call(case, a, **kw), args)
    except Exception as e:  # noqa: BLE001 - reported with the configuration
      failures.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
      del configs[name]

  @jax.jit
  def run(a):  # new shapes: one compiled program
    values = {name: _call(case, a, **kw) for name, kw in configs.items()}
    return values, _value_and_grads(case, a, w, where=m, reduction="weighted_mean")

  if "weighted_mean weights+where" in configs:
    values, (value, grads, grad_w) = run(list(args))
    for name, v in values.items():
      if name == "none":
        if v.size != 0:
          failures.append(f"none: shape {v.shape} is not empty")
      elif float(v) != 0.0:
        failures.append(f"{name}: value {float(v)}")
    assert [g.shape for g in grads] == [np.shape(args[i]) for i in _float_args(args)]
    assert grad_w.shape == (0,)
  assert not failures, failures


def _single_class(case: LossCase, args):
  c = args[0].shape[case.class_axis]
  out = []
  for i, a in enumerate(args):
    a = np.asarray(a)
    if i == case.label_arg:
      out.append(np.zeros_like(a))
    elif a.ndim == args[0].ndim and a.shape[case.class_axis] == c:
      out.append(np.take(a, [0], axis=case.class_axis))
    else:
      out.append(a)
  return out, _class_options(case, c, 1)


def _single_pixel(case: LossCase, args):
  n = case.pixel_axes
  if n is None:
    n = args[0].ndim - (2 if case.class_axis is not None else 1)
  pixels = args[0].shape[1:1 + n]
  out = []
  for a in args:
    a = np.asarray(a)[:1]
    if a.shape[1:1 + n] == pixels:
      a = a[(slice(None),) + (slice(0, 1),) * n]
    out.append(a)
  return out


def test_single_class_and_single_pixel_are_finite(case):
  """One image of one pixel, and C = 1 (class-axis losses): finite values (``"mean"`` and
  ``"none"``), or for C = 1 where it is meaningless (``single_class=False``) a ValueError
  naming input 0."""
  rng = _rng(case, 6)
  args = case.make_inputs(rng, BATCH, np.float32)
  configs = {"single pixel": (_single_pixel(case, args), {})}
  if case.class_axis is not None:
    one, extra = _single_class(case, args)
    if case.single_class:
      configs["C = 1"] = (one, extra)
    else:
      name = _input_names(case, args)[0]
      with pytest.raises(ValueError, match=f"`{name}`"):
        _call(case, one, **extra)
  failures = []
  for name, (a, extra) in configs.items():

    @jax.jit
    def run(a, extra=extra):  # new shapes: one compiled program (values only)
      value = _call(case, a, reduction="mean", **extra)
      return value, value if case.scalar_only else _call(case, a, reduction="none", **extra)

    try:
      value, per = run(a)
    except Exception as e:  # noqa: BLE001 - reported with the configuration
      failures.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
      continue
    if not (np.isfinite(value) and np.all(np.isfinite(per))):
      failures.append(f"{name}: value {float(value)}, per element {np.asarray(per).ravel()}")
  assert not failures, failures


# --------------------------------------------------------------------------- float32 limit


def test_finite_per_element_at_the_float32_limit(case):
  """±3e38 inputs whose true loss is representable (``extreme_inputs``): every element of
  ``reduction="none"`` is finite (``test_contract`` checks the scalar reductions and their
  gradients). Gradients w.r.t. float *labels* are not checked: d CE / d y = -log p is
  genuinely -6e38 at a 6e38 logit gap."""
  if case.scalar_only:
    pytest.skip("a composition has no reduction='none'")
  rng = _rng(case, 7)
  args = case.extreme_inputs(rng, BATCH)
  per = np.asarray(_call(case, args, reduction="none", **case.extreme_kwargs))
  bad = ~np.isfinite(per)
  assert not bad.any(), f"none: {per[bad]} at {np.argwhere(bad)[:4].tolist()}"


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("case", OPTION_CASES, ids=str)
def test_scalar_options_refuse_nan_inf_and_arrays(case):
  """NaN, ±inf (unless documented valid) and array values of a scalar option raise
  ValueError or TypeError naming the option."""
  rng = _rng(case, 8)
  args = case.make_inputs(rng, BATCH, np.float32)
  failures = []
  for name, valid in case.scalar_options.items():
    bad = [np.nan, -np.inf, np.full(3, valid, np.float32), np.full((1,), valid, np.float32)]
    if name not in case.infinite_options:
      bad.append(np.inf)
    for value in bad:
      try:
        _call(case, args, **{name: value})
      except (ValueError, TypeError) as e:
        if f"`{name}`" not in str(e):
          failures.append(f"{name}={value!r}: message does not name `{name}`: {str(e)[:160]}")
      else:
        failures.append(f"{name}={value!r} accepted")
  assert not failures, failures


# --------------------------------------------------------------------------- checked


def test_checked_names_every_input_holding_unmasked_nan(case):
  """``jaxloss.checked`` raises naming each float input (and ``weights``) that holds one
  unmasked NaN, and the labels for an out-of-range label; NaN under ``where`` passes."""
  rng = _rng(case, 9)
  args = (case.checked_inputs or case.make_inputs)(rng, BATCH, np.float32)
  w = _weights(BATCH, rng)
  m = np.ones(BATCH, bool)
  m[0] = False
  names = _input_names(case, args)
  # Jitted once, inside ``checked`` (the value checks are emitted at trace time);
  # the poisoned variants below differ in values only and reuse the compiled program.
  loss = jax.jit(lambda a, weights: _call(case, a, weights=weights, where=m,
                                          reduction="weighted_mean"))

  def run(a, weights):
    return jaxloss.checked(loss)(a, weights)

  failures = []
  try:
    run(list(args), w)
  except ValueError as e:
    failures.append(f"clean inputs reported: {str(e)[:160]}")
  masked_nan = [a.copy() for a in map(np.asarray, args)]
  for i in _float_args(args):
    masked_nan[i][0] = np.nan
  try:
    run(masked_nan, w)
  except ValueError as e:
    failures.append(f"NaN under the mask reported: {str(e)[:160]}")
  poisoned = [(names[i], i, np.nan) for i in _float_args(args)]
  if case.label_arg is not None:
    poisoned.append((names[case.label_arg], case.label_arg, _num_classes(case, args)))
  for name, i, bad in poisoned + [("weights", None, np.nan)]:
    a = [np.asarray(x).copy() for x in args]
    ww = w.copy()
    if i is None:
      ww[2] = bad
    else:
      a[i][2].reshape(-1)[0] = bad
    try:
      run(a, ww)
    except ValueError as e:
      if f"`{name}`" not in str(e):
        failures.append(f"{name}: message does not name `{name}`: {str(e)[:160]}")
    else:
      failures.append(f"{name}: an unmasked {bad} is not reported")
  assert not failures, failures
