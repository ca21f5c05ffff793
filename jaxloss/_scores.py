"""Score histograms: mean and std of a predicted distribution, and training targets."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._reduction import safe_div

METHODS = ("nearest", "linear", "gaussian")


def _bins(bins, n: int, dtype, name: str = "bins") -> jax.Array:
  if bins is None:
    return jnp.arange(1, n + 1, dtype=dtype)
  b = _checks.real_input(name, bins).astype(dtype)
  if b.shape != (n,):
    raise ValueError(f"`{name}` has shape {tuple(b.shape)}; expected ({n},), one score per "
                     "bin along `axis`.")
  return b


def _renamed_bins(bin_positions, bins):
  """``bin_positions``, or the deprecated ``bins`` with a DeprecationWarning."""
  if bins is None:
    return bin_positions
  if bin_positions is not None:
    raise TypeError("pass `bin_positions` only; `bins` is its deprecated name.")
  warnings.warn("`bins` is deprecated; pass `bin_positions` (the name every jaxloss score "
                "function uses).", DeprecationWarning, stacklevel=3)
  return bins


def _along(v: jax.Array, ndim: int, axis: int) -> jax.Array:
  return jnp.expand_dims(v, tuple(i for i in range(ndim) if i != axis))


def score_mean_std(
    probabilities: jax.typing.ArrayLike,
    *,
    bin_positions: jax.typing.ArrayLike | None = None,
    axis: int = -1,
    bins: jax.typing.ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
  r"""Mean and standard deviation of a score distribution (NIMA's read-out).

  .. math::
    \mu = \sum_k s_k p_k, \qquad \sigma = \sqrt{\sum_k (s_k - \mu)^2 p_k}

  with bin scores :math:`s_k` (``bin_positions``, default ``1..N``, the
  default of every score function in jaxloss: a histogram from
  :func:`jaxloss.scores_to_distribution` with its defaults reads back to the
  same mean with none here). The variance is
  taken as the sum of squared deviations, never as
  :math:`\sum s^2 p - \mu^2`, which cancels catastrophically for peaked
  histograms. The std's gradient is finite, and 0, where the std is 0.

  Equals ``scipy.stats.rv_discrete(values=(bins, p)).mean()`` and ``.std()``.

  Args:
    probabilities: histograms over ordered bins along ``axis``.
    bin_positions: optional ``[N]`` score of each bin (default ``1..N``).
    axis: the bin axis.
    bins: deprecated name of ``bin_positions`` (a ``DeprecationWarning``).

  Returns:
    ``(mean, std)``, each of the input's shape without ``axis``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> mean, std = jaxloss.score_mean_std(jnp.array([0.0, 0.5, 0.5]))
    >>> float(mean), float(std)
    (2.5, 0.5)
  """
  p = _checks.float_input("probabilities", probabilities)
  if p.ndim == 0:
    raise ValueError("`probabilities` must have a bin axis; got a scalar.")
  ax = _checks.normalize_axis("axis", axis, p.ndim)
  dtype = _checks.compute_dtype(p)
  p = p.astype(dtype)
  _checks.check_probabilities("probabilities", p, ax)
  bin_positions = _renamed_bins(bin_positions, bins)
  s = _along(_bins(bin_positions, p.shape[ax], dtype, "bin_positions"), p.ndim, ax)
  mean = jnp.sum(s * p, axis=ax)
  var = jnp.sum(jnp.square(s - jnp.expand_dims(mean, ax)) * p, axis=ax)
  # sqrt with a zero gradient at var == 0 (double where: no 1/sqrt(0) in the backward).
  positive = var > 0
  std = jnp.where(positive, jnp.sqrt(jnp.where(positive, var, 1)), 0)
  return mean, std


def scores_to_distribution(
    scores: jax.typing.ArrayLike,
    *,
    num_bins: int = 10,
    low: float = 1.0,
    high: float | None = None,
    method: str = "linear",
    std: jax.typing.ArrayLike = 1.0,
) -> jax.Array:
  r"""Float scores (e.g. 4.9) to target histograms over ``num_bins`` evenly spaced bins.

  The bins are ``linspace(low, high, num_bins)``; scores outside
  ``[low, high]`` are clipped to it. The default ``low=1, high=num_bins``
  places the bins at ``1..N``, the default ``bin_positions`` of
  :func:`jaxloss.score_mean_std` and :func:`jaxloss.earth_mover_distance`, so
  a histogram built here reads back to the same mean without extra arguments.
  For another scale, pass ``bin_positions=jnp.linspace(low, high, num_bins)``
  to the readers.

  ============  =============================================================
  ``method``    histogram
  ============  =============================================================
  "nearest"     one-hot of the nearest bin (loses the position inside the bin)
  "linear"      two-hot split between the two neighbouring bins, weights
                :math:`1-f` and :math:`f` for the fractional position
                :math:`f`, so the histogram's mean equals the score exactly
  "gaussian"    :math:`\propto \exp(-(s_k - \text{score})^2 / 2\,\text{std}^2)`,
                renormalised over the bins; ``std`` is a scalar or one per score
  ============  =============================================================

  Args:
    scores: float scores, any shape.
    num_bins: the number of bins ``N`` (static, >= 2).
    low: the score of the first bin.
    high: the score of the last bin; default ``num_bins`` (bins at ``1..N``
      with the default ``low``).
    method: ``"nearest"``, ``"linear"`` or ``"gaussian"``.
    std: the Gaussian's standard deviation (``method="gaussian"``), a scalar
      or the shape of ``scores``.

  Returns:
    Histograms of shape ``scores.shape + (num_bins,)``, float32.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> h = jaxloss.scores_to_distribution(jnp.array(4.25), num_bins=10)
    >>> [round(v, 2) for v in h.tolist()]
    [0.0, 0.0, 0.0, 0.75, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0]
  """
  if method not in METHODS:
    raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
  if not isinstance(num_bins, int) or num_bins < 2:
    raise ValueError(f"`num_bins` must be an int >= 2; got {num_bins!r}.")
  if high is None:
    high = float(num_bins)
  _checks.scalar_option("low", low)
  _checks.scalar_option("high", high)
  if not high > low:
    raise ValueError(f"`high` must exceed `low`; got low={low!r}, high={high!r}.")
  x = _checks.real_input("scores", scores)
  dtype = _checks.compute_dtype(x if jnp.issubdtype(x.dtype, jnp.floating) else None)
  x = jnp.clip(x.astype(dtype), low, high)
  # Fractional bin position u in [0, N-1].
  u = (x - low) * ((num_bins - 1) / (high - low))
  if method == "nearest":
    return jax.nn.one_hot(jnp.round(u).astype(jnp.int32), num_bins, dtype=dtype)
  if method == "linear":
    k = jnp.minimum(jnp.floor(u), num_bins - 2)
    frac = (u - k)[..., None]
    lower = jax.nn.one_hot(k.astype(jnp.int32), num_bins, dtype=dtype)
    upper = jax.nn.one_hot(k.astype(jnp.int32) + 1, num_bins, dtype=dtype)
    return (1 - frac) * lower + frac * upper
  sd = _checks.float_input("std", std).astype(dtype)
  if sd.ndim and sd.shape != x.shape:
    raise ValueError(f"`std` has shape {tuple(sd.shape)}; expected a scalar or the shape of "
                     f"`scores` {tuple(x.shape)}.")
  _checks.check_static_positive("std", std if sd.ndim == 0 else 1.0)
  centers = jnp.linspace(low, high, num_bins, dtype=dtype).reshape((1,) * x.ndim + (-1,))
  z = (centers - x[..., None]) / jnp.broadcast_to(sd, x.shape)[..., None]
  # Normalising with a softmax of the log-weights stays finite for a tiny std.
  return jax.nn.softmax(-0.5 * jnp.square(z), axis=-1)


def counts_to_distribution(
    counts: jax.typing.ArrayLike, *, axis: int = -1
) -> tuple[jax.Array, jax.Array]:
  """Rating-vote counts (AVA-style) to probabilities, with a mask of rows that have votes.

  Each row is divided by its total. Rows with no votes come back all-zero and
  ``False`` in the returned mask, ready to pass as ``where=`` to a loss so the
  unrated examples leave every numerator and denominator.

  Args:
    counts: non-negative vote counts, bins along ``axis``.
    axis: the bin axis.

  Returns:
    ``(probabilities, has_votes)``: float32 histograms the shape of ``counts``
    and a boolean mask without ``axis``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> p, ok = jaxloss.counts_to_distribution(jnp.array([[1, 3, 0], [0, 0, 0]]))
    >>> p.tolist(), ok.tolist()
    ([[0.25, 0.75, 0.0], [0.0, 0.0, 0.0]], [True, False])
  """
  c = _checks.real_input("counts", counts)
  if c.ndim == 0:
    raise ValueError("`counts` must have a bin axis; got a scalar.")
  ax = _checks.normalize_axis("axis", axis, c.ndim)
  dtype = _checks.compute_dtype(c if jnp.issubdtype(c.dtype, jnp.floating) else None)
  c = c.astype(dtype)
  _checks.check_nonnegative("counts", c)
  total = jnp.sum(c, axis=ax, keepdims=True)
  return safe_div(c, total), jnp.squeeze(total, ax) > 0
