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
  """``jnp.asarray(x)``, requiring an integer dtype (class ids)."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise TypeError(f"`{name}` must hold integer class ids; got {_describe(x)}.")
  return x


# --------------------------------------------------------------------------- options


def check_reduction(reduction: str) -> str:
  if reduction not in REDUCTIONS:
    raise ValueError(f"`reduction` must be one of {REDUCTIONS}; got {reduction!r}.")
  return reduction


def check_static_positive(name: str, value: Any) -> None:
  """Raises if ``value`` is a concrete number that is not > 0 (traced values pass)."""
  try:
    concrete = float(value)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return
  if not concrete > 0:
    raise ValueError(f"`{name}` must be > 0; got {value!r}.")


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
    check_nonnegative("weights", w, where=m)
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
    _check(jnp.all(p >= 0), f"`{name}` has negative probabilities (min {{m}}).", m=jnp.min(p))
    _check(jnp.all(ok), f"`{name}` does not sum to 1 along axis {axis} (e.g. {{s}}); "
           "jaxloss never renormalises silently.",
           s=total.reshape(-1)[jnp.argmax(~ok.reshape(-1))])


def static_size(shape: Sequence[int]) -> int:
  return functools.reduce(operator.mul, shape, 1)
