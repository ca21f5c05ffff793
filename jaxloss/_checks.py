"""Input checks and the dtype policy shared by every loss.

Two kinds of checks live here:

* **Static checks** run at trace time on shapes, ranks and dtypes. They cost
  nothing at run time and raise ``ValueError`` (shape, rank, option) or
  ``TypeError`` (dtype) with a message that names the argument, its shape and
  what was expected.
* **Value checks** (NaN inputs, negative weights, out-of-range labels,
  probabilities that are negative or do not sum to one) are opt-in. They are
  emitted as :func:`jax.experimental.checkify.check` calls only while
  :func:`value_checks` is active *when the loss is traced*; otherwise they add
  no operation at all. See :func:`checked` for the one-line way to use them.

Dtype policy: floating inputs of any width are accepted; the arithmetic runs
in ``float32``, or ``float64`` when an input is ``float64`` and x64 is enabled.
Losses are returned in that compute dtype; gradients come back in each input's
own dtype (the cast's transpose takes care of that).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

REDUCTIONS = ("none", "sum", "mean", "weighted_mean", "sum_by_nonzero_weights")

_F = TypeVar("_F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- dtypes


def compute_dtype(*arrays: jax.Array | None) -> jnp.dtype:
  """float64 if some floating input is float64 (only possible under x64), else float32."""
  for a in arrays:
    if a is not None and a.dtype == jnp.float64:
      return jnp.dtype(jnp.float64)
  return jnp.dtype(jnp.float32)


def _describe(x: jax.Array) -> str:
  return f"shape {tuple(x.shape)} and dtype {x.dtype}"


def float_input(name: str, x: jax.typing.ArrayLike) -> jax.Array:
  """``jnp.asarray(x)``, requiring a real floating dtype (what is differentiated)."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
        f"`{name}` must be a real floating array (float16, bfloat16, float32 or "
        f"float64); got {_describe(x)}. Cast it, e.g. `{name}.astype(jnp.float32)`."
    )
  return x


def real_input(name: str, x: jax.typing.ArrayLike) -> jax.Array:
  """``jnp.asarray(x)``, requiring a bool, integer or real floating dtype."""
  x = jnp.asarray(x)
  if not (
      jnp.issubdtype(x.dtype, jnp.floating)
      or jnp.issubdtype(x.dtype, jnp.integer)
      or x.dtype == jnp.bool_
  ):
    raise TypeError(
        f"`{name}` must be a real (bool, integer or floating) array; got {_describe(x)}."
    )
  return x


def bool_input(name: str, x: jax.typing.ArrayLike) -> jax.Array:
  """``jnp.asarray(x)``, requiring dtype bool (masks are never silently thresholded)."""
  x = jnp.asarray(x)
  if x.dtype != jnp.bool_:
    raise TypeError(
        f"`{name}` must be a boolean mask; got {_describe(x)}. "
        f"Pass e.g. `{name}={name} != 0` if it holds 0/1 values."
    )
  return x


def integer_input(name: str, x: jax.typing.ArrayLike) -> jax.Array:
  """``jnp.asarray(x)``: integer (or bool) class ids, widened (see :func:`widen_labels`)."""
  x = jnp.asarray(x)
  if not (jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_):
    raise TypeError(f"`{name}` must hold integer class ids; got {_describe(x)}.")
  return widen_labels(x)


def is_class_ids(y: jax.Array) -> bool:
  """Whether ``y`` holds class ids (any integer dtype, or bool) rather than probabilities."""
  return bool(jnp.issubdtype(y.dtype, jnp.integer) or y.dtype == jnp.bool_)


def widen_labels(y: jax.Array) -> jax.Array:
  """Class ids in a dtype wide enough for every index computation.

  bool, int8/16 and uint8/16 labels become int32 *before* any comparison,
  subtraction or index arithmetic (a uint8 ``19 * 20 + 19`` wraps; ``-100 ==
  uint8_label`` overflows), so every integer dtype gives identical results.
  uint32 becomes int64 under x64; without x64 it becomes int32, where a value
  above 2**31 turns negative and is therefore still an *invalid* label, never a
  valid one.
  """
  if y.dtype == jnp.bool_ or (jnp.issubdtype(y.dtype, jnp.integer) and y.dtype.itemsize < 4):
    return y.astype(jnp.int32)
  if y.dtype == jnp.uint32 or y.dtype == jnp.uint64:
    return y.astype(jax.dtypes.canonicalize_dtype(jnp.int64))
  return y


def check_ignore_index(ignore_index: Any) -> int | None:
  """``ignore_index`` is ``None`` or a Python/NumPy int (any value, inside or outside [0, C))."""
  if ignore_index is None:
    return None
  if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
    raise TypeError(f"`ignore_index` must be None or a Python int; got {ignore_index!r}.")
  return int(ignore_index)


def invalid_labels(y: jax.Array, num_classes: int, ignore_index: int | None = None) -> jax.Array:
  """True where a (widened) class id lies outside ``[0, num_classes)`` and is not ignored."""
  bad = (y < 0) | (y >= num_classes)
  if ignore_index is not None:
    bad = bad & (y != ignore_index)
  return bad


def check_num_classes(name: str, num_classes: Any) -> int:
  """A static class count ``>= 1`` (a Python int), or a ValueError naming ``name``."""
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
    raise TypeError(f"`{name}` must be a Python int; got {num_classes!r}.")
  if num_classes < 1:
    raise ValueError(f"`{name}` must be >= 1; got {num_classes}.")
  return int(num_classes)


def per_class_vector(name: str, value: jax.typing.ArrayLike, num_classes: int, dtype: jnp.dtype,
                     context: str = "") -> jax.Array:
  """A ``[C]`` per-class option (``class_weights``, ``pos_weight``) checked and cast to ``dtype``.

  The shape must be exactly ``(num_classes,)`` (a ValueError naming ``name``; ``context``
  ends the message, e.g. " of `logits` (2, 5) along axis 1"); the opt-in value checks
  report non-finite and negative entries.
  """
  v = real_input(name, value)
  if v.shape != (num_classes,):
    raise ValueError(f"`{name}` has shape {tuple(v.shape)}; expected ({num_classes},), one value "
                     f"per class{context}.")
  v = v.astype(dtype)
  check_finite(name, v)
  check_nonnegative(name, v)
  return v


def check_axis_size(name: str, x: jax.Array, axis: int, what: str, minimum: int = 1) -> int:
  """The static size of ``x``'s ``axis``; a ValueError naming the axis when below ``minimum``."""
  size = x.shape[axis]
  if size < minimum:
    raise ValueError(
        f"`{name}` has shape {tuple(x.shape)}: its {what} (axis {axis}) has size {size}; "
        f"expected at least {minimum}."
    )
  return size


# --------------------------------------------------------------------------- options


def check_reduction(reduction: str) -> str:
  if reduction not in REDUCTIONS:
    raise ValueError(f"`reduction` must be one of {REDUCTIONS}; got {reduction!r}.")
  return reduction


def check_static_positive(name: str, value: Any) -> None:
  """Raises if ``value`` is not a scalar, or a concrete number that is not finite and > 0."""
  scalar_option(name, value, low=0.0, low_inclusive=False)


def scalar_option(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    allow_inf: bool = False,
) -> Any:
  """Checks a scalar option (``delta``, ``gamma``, ``smooth``, ``temperature`` ...).

  * An array with any axis raises ``ValueError``: a ``[3]`` ``delta`` would
    otherwise broadcast silently into per-column behaviour.
  * A concrete value that is NaN, infinite (unless ``allow_inf``) or outside
    ``[low, high]`` raises ``ValueError`` naming ``name``.
  * A traced value (an option under ``jit`` or ``grad``) passes unchecked.

  Returns ``value`` unchanged.
  """
  shape = np.shape(value)
  if shape != ():
    raise ValueError(f"`{name}` must be a scalar; got an array of shape {tuple(shape)}.")
  if value is None or isinstance(value, (str, bytes)):
    raise TypeError(f"`{name}` must be a real number; got {value!r}.")
  try:
    concrete = float(value)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
    return value
  except TypeError as e:
    raise TypeError(f"`{name}` must be a real number; got {value!r}.") from e
  if np.isnan(concrete):
    raise ValueError(f"`{name}` must be a number; got NaN.")
  if np.isinf(concrete) and not allow_inf:
    raise ValueError(f"`{name}` must be finite; got {concrete}.")
  too_low = low is not None and (concrete < low if low_inclusive else concrete <= low)
  too_high = high is not None and (concrete > high if high_inclusive else concrete >= high)
  if too_low or too_high:
    if high is None:
      expected = f"{'>=' if low_inclusive else '>'} {low:g}"
    elif low is None:
      expected = f"{'<=' if high_inclusive else '<'} {high:g}"
    else:
      lo = ("[" if low_inclusive else "(") + f"{low:g}"
      expected = f"lie in {lo}, {high:g}" + ("]" if high_inclusive else ")")
    raise ValueError(f"`{name}` must be {expected}; got {value!r}.".replace("be lie", "lie"))
  return value


def normalize_axis(name: str, axis: int, ndim: int) -> int:
  if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
    raise TypeError(f"`{name}` must be a Python int; got {axis!r}.")
  if not -ndim <= axis < ndim:
    raise ValueError(f"`{name}`={axis} is out of range for an input of rank {ndim}.")
  return int(axis) % ndim


# --------------------------------------------------------------------------- shapes


def broadcast_operands(name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> tuple[int, ...]:
  """The common shape of two operands that must line up element by element.

  Scalars broadcast. Otherwise both must have the same rank, and each axis must
  agree or be 1 on one side. Rank-changing broadcasts are refused: a
  ``[B, 1]`` prediction against a ``[B]`` target would silently become
  ``[B, B]`` in NumPy, the classic regression-loss bug.
  """
  if a.ndim == 0 or b.ndim == 0:
    return tuple(a.shape) if b.ndim == 0 else tuple(b.shape)
  if a.ndim != b.ndim:
    raise ValueError(
        f"`{name_a}` has shape {tuple(a.shape)} and `{name_b}` has shape {tuple(b.shape)}: "
        f"ranks {a.ndim} and {b.ndim} differ. jaxloss does not broadcast across ranks "
        f"(a [B, 1] prediction against a [B] target would become [B, B]); "
        f"reshape one of them so both have rank {max(a.ndim, b.ndim)}."
    )
  shape = []
  for i, (da, db) in enumerate(zip(a.shape, b.shape, strict=True)):
    if da != db and 1 not in (da, db):
      raise ValueError(
          f"`{name_a}` has shape {tuple(a.shape)} and `{name_b}` has shape {tuple(b.shape)}: "
          f"axis {i} has sizes {da} and {db}, which neither agree nor broadcast."
      )
    shape.append(max(da, db))
  return tuple(shape)


def align_to_loss(
    name: str, x: jax.Array, shape: Sequence[int], what: str = "loss"
) -> jax.Array:
  """Aligns ``weights`` or ``where`` with the per-element loss shape, without broadcasting.

  Accepted shapes, all checked at trace time:

  * a scalar;
  * the full ``shape``;
  * a leading prefix of ``shape`` (per-example weights ``[B]`` for losses
    ``[B, ...]``), aligned on the *leading* axes as Keras and TF do;
  * the same rank as ``shape`` with some axes of size 1.

  Anything else, notably a lower-rank array aligned on trailing axes, raises.
  The result has the rank of ``shape`` with size-1 axes where it broadcasts;
  it is left compact so that XLA never materialises a broadcast weight array.
  """
  shape = tuple(shape)
  if x.ndim == 0:
    return x.reshape((1,) * len(shape))
  if x.ndim < len(shape) and tuple(x.shape) == shape[: x.ndim]:
    x = x.reshape(x.shape + (1,) * (len(shape) - x.ndim))
  if x.ndim == len(shape) and all(d in (1, s) for d, s in zip(x.shape, shape, strict=True)):
    return x
  raise ValueError(
      f"`{name}` has shape {tuple(x.shape)}, which does not fit the per-element {what} "
      f"shape {shape}. Expected a scalar, {shape}, a leading prefix of it such as "
      f"{shape[:1]} (one value per example), or a rank-{len(shape)} shape whose axes are "
      f"1 or equal to {shape}."
  )


def weights_and_mask(
    weights: jax.typing.ArrayLike | None,
    where: jax.typing.ArrayLike | None,
    shape: Sequence[int],
    dtype: jnp.dtype,
    what: str = "loss",
) -> tuple[jax.Array | None, jax.Array | None]:
  """Checks ``weights`` (cast to ``dtype``) and ``where`` and aligns them with ``shape``.

  Both come back with the rank of ``shape`` and size-1 axes where they
  broadcast (see :func:`align_to_loss`), or ``None``.
  """
  w = m = None
  if weights is not None:
    w = align_to_loss("weights", real_input("weights", weights), shape, what).astype(dtype)
  if where is not None:
    m = align_to_loss("where", bool_input("where", where), shape, what)
  if w is not None:
    check_finite("weights", w, where=m)
    check_nonnegative("weights", w, where=m)
    if m is not None:
      # Masked weights leave the arithmetic here, once for every loss: a NaN or inf
      # weight under the mask then has zero value and zero gradient (double-where:
      # the select's transpose sends 0 to the masked entries).
      w = jnp.where(m, w, jnp.zeros((), dtype))
  return w, m


# --------------------------------------------------------------------------- value checks

_VALUE_CHECKS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "jaxloss_value_checks", default=False
)


@contextlib.contextmanager
def value_checks(enabled: bool = True) -> Iterator[None]:
  """Context manager that turns the opt-in value checks on while losses are traced.

  Inside it, every loss traced adds :func:`jax.experimental.checkify.check`
  calls for NaN inputs, negative weights, out-of-range integer labels and
  invalid probabilities. Eagerly they raise at once; under :func:`jax.jit` the
  function must be functionalised with :func:`jax.experimental.checkify.checkify`
  (or simply wrapped with :func:`checked`). Outside the context no check is
  emitted, so the default costs nothing.

  The switch is read at *trace* time: a function already traced and cached by
  ``jax.jit`` without checks keeps running without them.

  Args:
    enabled: ``False`` turns the checks off inside an enclosing ``value_checks()``.

  Yields:
    Nothing; the checks are on for the body of the ``with`` statement.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> with jaxloss.value_checks():
    ...   jaxloss.mean_squared_error(jnp.array([1.0, jnp.nan]), jnp.zeros(2))
    Traceback (most recent call last):
    ...
    jax...JaxRuntimeError: jaxloss: `predictions` contains NaN or inf ...
  """
  token = _VALUE_CHECKS.set(enabled)
  try:
    yield
  finally:
    _VALUE_CHECKS.reset(token)


def value_checks_enabled() -> bool:
  return _VALUE_CHECKS.get()


def checked(fn: _F) -> _F:
  """Wraps ``fn`` so that it runs with value checks on and raises on a failed check.

  ``fn`` is functionalised with :func:`jax.experimental.checkify.checkify`, so
  it may be (or contain) a jitted function. A failed check raises
  ``JaxRuntimeError`` (a ``ValueError``) carrying the check's message.

  Args:
    fn: any function of arrays, jitted or not, that calls jaxloss losses.

  Returns:
    A function with ``fn``'s signature and outputs that raises on a failed check.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import jaxloss
    >>> loss = jaxloss.checked(jax.jit(jaxloss.mean_squared_error))
    >>> float(loss(jnp.ones(3), jnp.zeros(3)))
    1.0
  """

  @functools.wraps(fn)
  def wrapper(*args: Any, **kwargs: Any) -> Any:
    with value_checks(True):
      err, out = checkify.checkify(fn, errors=checkify.user_checks)(*args, **kwargs)
    err.throw()
    return out

  return wrapper  # type: ignore[return-value]


def _check(ok: jax.Array, msg: str, **fmt: jax.Array) -> None:
  if value_checks_enabled():
    checkify.check(ok, "jaxloss: " + msg, **fmt)


def _masked(where: jax.Array | None, ok: jax.Array) -> jax.Array:
  return ok if where is None else jnp.logical_or(ok, jnp.logical_not(where))


def check_finite(name: str, x: jax.Array, where: jax.Array | None = None) -> None:
  """Opt-in: every unmasked element of ``x`` is finite (masked ones may be NaN)."""
  if value_checks_enabled() and jnp.issubdtype(x.dtype, jnp.inexact):
    ok = jnp.isfinite(x)
    if where is not None:
      ok = jnp.broadcast_to(ok, jnp.broadcast_shapes(ok.shape, where.shape))
    bad = jnp.sum(jnp.logical_not(_masked(where, ok)))
    _check(bad == 0, f"`{name}` contains NaN or inf in {{n}} unmasked element(s).", n=bad)


def check_nonnegative(name: str, x: jax.Array, where: jax.Array | None = None) -> None:
  """Opt-in: every unmasked element of ``x`` is >= 0."""
  if value_checks_enabled():
    ok = _masked(where, x >= 0)
    _check(jnp.all(ok), f"`{name}` must be non-negative; its smallest value is {{m}}.",
           m=jnp.min(jnp.where(ok, jnp.inf, x.astype(jnp.float32)), initial=jnp.inf))


def check_labels_in_range(
    name: str, labels: jax.Array, num_classes: int, ignore_index: int | None = None,
    where: jax.Array | None = None,
) -> None:
  """Opt-in: integer labels lie in ``[0, num_classes)`` or equal ``ignore_index``."""
  if value_checks_enabled():
    ok = (labels >= 0) & (labels < num_classes)
    if ignore_index is not None:
      ok = ok | (labels == ignore_index)
    ok = _masked(where, ok)
    bad = jnp.where(ok, 0, labels)
    _check(jnp.all(ok), f"`{name}` holds a label outside [0, {num_classes})"
           + ("" if ignore_index is None else f" that is not ignore_index={ignore_index}")
           + " (e.g. {v}).", v=bad.reshape(-1)[jnp.argmax(~ok.reshape(-1))])


def check_probabilities(
    name: str, p: jax.Array, axis: int, where: jax.Array | None = None, atol: float = 1e-3
) -> None:
  """Opt-in: ``p`` is non-negative and sums to 1 (within ``atol``) along ``axis``."""
  if value_checks_enabled():
    total = jnp.sum(p.astype(jnp.float32), axis=axis)
    ok = _masked(where, jnp.abs(total - 1) <= atol)
    nonneg = p >= 0
    if where is not None:
      nonneg = _masked(jnp.expand_dims(where, axis), nonneg)
    _check(jnp.all(nonneg), f"`{name}` has negative probabilities (min {{m}}).",
           m=jnp.min(jnp.where(nonneg, jnp.inf, p.astype(jnp.float32)), initial=jnp.inf))
    _check(jnp.all(ok), f"`{name}` does not sum to 1 along axis {axis} (e.g. {{s}}); "
           "jaxloss never renormalises silently.",
           s=total.reshape(-1)[jnp.argmax(~ok.reshape(-1))])


def static_size(shape: Sequence[int]) -> int:
  return functools.reduce(operator.mul, shape, 1)
