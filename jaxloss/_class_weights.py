"""Class-weight estimation from pixel counts: median frequency, inverse, effective number."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _checks
from jaxloss._reduction import safe_div


class ClassCounts(NamedTuple):
  """Pixel statistics of a labelled set; counts from successive batches add up.

  Attributes:
    class_pixels: ``[C]`` pixels of each class.
    image_pixels: ``[C]`` labelled pixels of the images in which each class appears.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> first = jaxloss.class_pixel_counts(jnp.array([[0, 0, 1, 1]]), 3)
    >>> second = jaxloss.class_pixel_counts(jnp.array([[0, 0, 0, 2]]), 3)
    >>> total = first + second  # counts over a dataset, one batch at a time
    >>> total.class_pixels.tolist(), total.image_pixels.tolist()
    ([5.0, 2.0, 1.0], [8.0, 4.0, 4.0])
  """

  class_pixels: jax.Array
  image_pixels: jax.Array

  def __add__(self, other: ClassCounts) -> ClassCounts:  # type: ignore[override]
    return ClassCounts(self.class_pixels + other.class_pixels,
                       self.image_pixels + other.image_pixels)


def class_pixel_counts(
    labels: jax.typing.ArrayLike,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    axis_name: str | None = None,
) -> ClassCounts:
  """Per-class pixel counts of integer label maps ``[B, ...]`` (axis 0 indexes images).

  Returns :class:`ClassCounts`: the pixels of each class, and the labelled
  (not ``ignore_index``) pixels of the images in which each class appears, the
  denominator of SegNet's median frequency balancing. Counts are float32 (exact
  up to 2^24 per call; accumulate batches with ``+``). With ``axis_name`` they
  are ``psum``-ed over a sharded batch. Labels of any integer dtype (or bool)
  give identical counts; an empty batch (``B = 0``) gives zero counts.

  ``ignore_index`` pixels are left out of *every* count, as if sliced away,
  even when ``ignore_index`` lies inside ``[0, num_classes)``: they are neither
  pixels of their class nor labelled pixels of their image.

  A label outside ``[0, num_classes)`` that is not ``ignore_index`` makes every
  count NaN, so it can never be dropped unnoticed (the weight estimators then
  give NaN weights); :func:`jaxloss.checked` names it.

  Args:
    labels: integer label maps ``[B, ...]``, one image per index of axis 0.
    num_classes: the number of classes ``C`` (static, ``>= 1``).
    ignore_index: optional label left out of every count.
    axis_name: optional mapped axis to ``psum`` the counts over.

  Returns:
    :class:`ClassCounts` with two ``[C]`` float32 arrays.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> labels = jnp.array([[0, 0, 1, 1], [0, 0, 0, 2]])  # two images of 4 pixels
    >>> counts = jaxloss.class_pixel_counts(labels, 3)
    >>> counts.class_pixels.tolist(), counts.image_pixels.tolist()
    ([5.0, 2.0, 1.0], [8.0, 4.0, 4.0])
    >>> ignored = jaxloss.class_pixel_counts(labels, 3, ignore_index=0)  # class 0 left out
    >>> ignored.class_pixels.tolist(), ignored.image_pixels.tolist()
    ([0.0, 2.0, 1.0], [0.0, 2.0, 1.0])
  """
  y = _checks.integer_input("labels", labels)
  if y.ndim < 1:
    raise ValueError(f"`labels` must be [B, ...] with images on axis 0; got shape {y.shape}.")
  c = _checks.check_num_classes("num_classes", num_classes)
  ignore_index = _checks.check_ignore_index(ignore_index)
  _checks.check_labels_in_range("labels", y, c, ignore_index)
  y = y.reshape(y.shape[0], _checks.static_size(y.shape[1:]))  # B = 0 has no -1 to infer
  labelled = jnp.ones(y.shape, bool) if ignore_index is None else y != ignore_index
  hit = (lax.broadcasted_iota(y.dtype, y.shape + (c,), 2) == y[..., None]) & labelled[..., None]
  per_image = jnp.sum(hit, axis=1, dtype=jnp.float32)  # [B, C]
  image_size = jnp.sum(labelled, axis=1, dtype=jnp.float32)  # [B]
  class_pixels = jnp.sum(per_image, axis=0)
  image_pixels = jnp.sum(jnp.where(per_image > 0, image_size[:, None], 0), axis=0)
  invalid = jnp.any(_checks.invalid_labels(y, c, ignore_index))
  poison = jnp.where(invalid, jnp.nan, 0).astype(jnp.float32)
  counts = ClassCounts(class_pixels + poison, image_pixels + poison)
  if axis_name is not None:
    counts = ClassCounts(*lax.psum(tuple(counts), axis_name))
  return counts


def _counts(counts: ClassCounts) -> tuple[jax.Array, jax.Array]:
  n = _checks.float_input("counts.class_pixels", counts[0]).astype(jnp.float32)
  d = _checks.float_input("counts.image_pixels", counts[1]).astype(jnp.float32)
  if n.ndim != 1 or d.shape != n.shape:
    raise ValueError(f"`counts` must hold two [C] arrays; got shapes {n.shape} and {d.shape}.")
  _checks.check_axis_size("counts.class_pixels", n, 0, "class axis")
  return n, d


def _poisoned(weights: jax.Array, *counts: jax.Array) -> jax.Array:
  """NaN weights wherever a count is NaN: poison from the labels is never laundered into 0."""
  bad = functools.reduce(jnp.logical_or, [jnp.any(jnp.isnan(x)) for x in counts])
  return jnp.where(bad, jnp.nan, weights)


def _frequencies(n: jax.Array, d: jax.Array, frequency: str) -> jax.Array:
  if frequency == "image":
    return safe_div(n, d)
  if frequency == "global":
    return safe_div(n, jnp.sum(n))
  raise ValueError(f"`frequency` must be 'image' or 'global'; got {frequency!r}.")


def median_frequency_weights(counts: ClassCounts, *, frequency: str = "image") -> jax.Array:
  r"""Median frequency balancing (Eigen & Fergus 2015; SegNet).

  .. math::
    w_c = \frac{\mathrm{median}_{k\ \text{present}}\, f_k}{f_c}, \qquad
    f_c = \frac{\text{pixels of } c}{\text{pixels of the images containing } c}

  ``frequency="global"`` uses :math:`f_c` = pixels of c over all pixels
  instead. The median is taken over the classes that appear; a class that
  never appears gets weight 0 (no inf, no NaN), which is how a void class gets
  0.0. A NaN count (:func:`class_pixel_counts` of an out-of-range label)
  makes every weight NaN, so a loss weighted by them is NaN, never 0.

  Args:
    counts: :class:`ClassCounts` from :func:`class_pixel_counts`.
    frequency: ``"image"`` (SegNet) or ``"global"``.

  Returns:
    ``[C]`` float32 class weights.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> counts = jaxloss.class_pixel_counts(jnp.array([[0, 0, 1, 1], [0, 0, 0, 2]]), 4)
    >>> [round(w, 4) for w in jaxloss.median_frequency_weights(counts).tolist()]
    [0.8, 1.0, 2.0, 0.0]
  """
  n, d = _counts(counts)
  f = _frequencies(n, d, frequency)
  present = n > 0
  median = jnp.nanmedian(jnp.where(present, f, jnp.nan))
  w = jnp.where(present, safe_div(median, jnp.where(present, f, 1)), 0)
  return _poisoned(w, n, d)


def inverse_frequency_weights(counts: ClassCounts) -> jax.Array:
  r"""Inverse-frequency ("balanced") weights over the classes that appear.

  .. math::
    w_c = \frac{\sum_k n_k}{K\, n_c}

  with :math:`n_c` the pixels of class c and :math:`K` the number of classes
  present; absent classes get 0. This is scikit-learn's
  ``compute_class_weight("balanced", ...)``; the pixel-weighted mean weight is 1.
  A NaN count makes every weight NaN.

  Args:
    counts: :class:`ClassCounts` from :func:`class_pixel_counts`.

  Returns:
    ``[C]`` float32 class weights.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> counts = jaxloss.class_pixel_counts(jnp.array([[0, 0, 0, 1]]), 3)
    >>> [round(w, 4) for w in jaxloss.inverse_frequency_weights(counts).tolist()]
    [0.6667, 2.0, 0.0]
  """
  n, _ = _counts(counts)
  f = _frequencies(n, None, "global")
  present = n > 0
  k = jnp.sum(present, dtype=jnp.float32)
  w = jnp.where(present, safe_div(jnp.ones_like(f), k * jnp.where(present, f, 1)), 0)
  return _poisoned(w, n)


def effective_number_weights(counts: ClassCounts, *, beta: float = 0.999) -> jax.Array:
  r"""Class-balanced weights from the effective number of samples (Cui et al. 2019).

  .. math::
    E_c = \frac{1 - \beta^{n_c}}{1 - \beta}, \qquad
    w_c = \frac{K}{\sum_{k\ \text{present}} 1/E_k} \cdot \frac{1}{E_c}

  normalised so the weights of the ``K`` present classes sum to ``K``;
  absent classes get 0. :math:`\beta^{n}` is evaluated as
  :math:`\exp(n \log\beta)`, accurate for pixel counts in the millions.
  A NaN count makes every weight NaN.

  Args:
    counts: :class:`ClassCounts` from :func:`class_pixel_counts`.
    beta: :math:`\beta \in [0, 1)`, a scalar; 0 gives equal weights, towards 1
      inverse frequency.

  Returns:
    ``[C]`` float32 class weights.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> counts = jaxloss.class_pixel_counts(jnp.array([[0, 0, 0, 1]]), 3)
    >>> [round(w, 4) for w in jaxloss.effective_number_weights(counts, beta=0.5).tolist()]
    [0.7273, 1.2727, 0.0]
  """
  _checks.scalar_option("beta", beta, low=0.0, high=1.0, high_inclusive=False)
  n, _ = _counts(counts)
  present = n > 0
  # 1 − β^n = −expm1(n log β): no cancellation for β close to 1. log β is taken in
  # float64 for a concrete β (float32(1 − 1e-8) would round to 1). At β = 0,
  # log β = −inf and a present class (n ≥ 1) gets 1 − β^n = 1: equal weights.
  # The factor 1/(1 − β) of E_c cancels in the normalisation.
  try:
    concrete = float(beta)
    log_b = jnp.asarray(math.log(concrete) if concrete > 0 else -math.inf, jnp.float32)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
    log_b = jnp.log(jnp.asarray(beta, jnp.float32))
  effective = -jnp.expm1(jnp.where(present, n, 1) * log_b)
  inv = jnp.where(present, 1 / effective, 0)
  k = jnp.sum(present, dtype=jnp.float32)
  return _poisoned(safe_div(k * inv, jnp.sum(inv)), n)
