"""Class-weight estimation from pixel counts: median frequency, inverse, effective number."""

from __future__ import annotations

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
  are ``psum``-ed over a sharded batch.

  A label outside ``[0, num_classes)`` that is not ``ignore_index`` makes every
  count NaN, so it can never be dropped unnoticed; :func:`jaxloss.checked`
  names it.

  Args:
    labels: integer label maps ``[B, ...]``, one image per index of axis 0.
    num_classes: the number of classes ``C`` (static).
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
  """
  y = _checks.integer_input("labels", labels)
  if y.ndim < 1:
    raise ValueError(f"`labels` must be [B, ...] with images on axis 0; got shape {y.shape}.")
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"`num_classes` must be a positive int; got {num_classes!r}.")
  _checks.check_labels_in_range("labels", y, num_classes, ignore_index)
  y = y.reshape(y.shape[0], -1)
  labelled = jnp.ones(y.shape, bool) if ignore_index is None else y != ignore_index
  hit = lax.broadcasted_iota(y.dtype, y.shape + (num_classes,), 2) == y[..., None]
  per_image = jnp.sum(hit, axis=1, dtype=jnp.float32)  # [B, C]
  image_size = jnp.sum(labelled, axis=1, dtype=jnp.float32)  # [B]
  class_pixels = jnp.sum(per_image, axis=0)
  image_pixels = jnp.sum(jnp.where(per_image > 0, image_size[:, None], 0), axis=0)
  invalid = jnp.sum(labelled & ((y < 0) | (y >= num_classes)))
  poison = jnp.where(invalid > 0, jnp.nan, 0).astype(jnp.float32)
  counts = ClassCounts(class_pixels + poison, image_pixels + poison)
  if axis_name is not None:
    counts = ClassCounts(*lax.psum(tuple(counts), axis_name))
  return counts


def _frequencies(counts: ClassCounts, frequency: str) -> tuple[jax.Array, jax.Array]:
  n = _checks.float_input("counts.class_pixels", counts[0]).astype(jnp.float32)
  d = _checks.float_input("counts.image_pixels", counts[1]).astype(jnp.float32)
  if n.ndim != 1 or d.shape != n.shape:
    raise ValueError(f"`counts` must hold two [C] arrays; got shapes {n.shape} and {d.shape}.")
  if frequency == "image":
    return safe_div(n, d), n > 0
  if frequency == "global":
    return safe_div(n, jnp.sum(n)), n > 0
  raise ValueError(f"`frequency` must be 'image' or 'global'; got {frequency!r}.")


def median_frequency_weights(counts: ClassCounts, *, frequency: str = "image") -> jax.Array:
  r"""Median frequency balancing (Eigen & Fergus 2015; SegNet).

  .. math::
    w_c = \frac{\mathrm{median}_{k\ \text{present}}\, f_k}{f_c}, \qquad
    f_c = \frac{\text{pixels of } c}{\text{pixels of the images containing } c}

  ``frequency="global"`` uses :math:`f_c` = pixels of c over all pixels
  instead. The median is taken over the classes that appear; a class that
  never appears gets weight 0 (no inf, no NaN), which is how a void class gets
  0.0.

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
  f, present = _frequencies(counts, frequency)
  median = jnp.nanmedian(jnp.where(present, f, jnp.nan))
  return jnp.where(present, safe_div(median, jnp.where(present, f, 1)), 0)


def inverse_frequency_weights(counts: ClassCounts) -> jax.Array:
  r"""Inverse-frequency ("balanced") weights over the classes that appear.

  .. math::
    w_c = \frac{\sum_k n_k}{K\, n_c}

  with :math:`n_c` the pixels of class c and :math:`K` the number of classes
  present; absent classes get 0. This is scikit-learn's
  ``compute_class_weight("balanced", ...)``; the pixel-weighted mean weight is 1.

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
  f, present = _frequencies(counts, "global")
  k = jnp.sum(present, dtype=jnp.float32)
  return jnp.where(present, safe_div(jnp.ones_like(f), k * jnp.where(present, f, 1)), 0)


def effective_number_weights(counts: ClassCounts, *, beta: float = 0.999) -> jax.Array:
  r"""Class-balanced weights from the effective number of samples (Cui et al. 2019).

  .. math::
    E_c = \frac{1 - \beta^{n_c}}{1 - \beta}, \qquad
    w_c = \frac{K}{\sum_{k\ \text{present}} 1/E_k} \cdot \frac{1}{E_c}

  normalised so the weights of the ``K`` present classes sum to ``K``;
  absent classes get 0. :math:`\beta^{n}` is evaluated as
  :math:`\exp(n \log\beta)`, accurate for pixel counts in the millions.

  Args:
    counts: :class:`ClassCounts` from :func:`class_pixel_counts`.
    beta: :math:`\beta \in [0, 1)`; 0 gives equal weights, towards 1 inverse frequency.

  Returns:
    ``[C]`` float32 class weights.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> counts = jaxloss.class_pixel_counts(jnp.array([[0, 0, 0, 1]]), 3)
    >>> [round(w, 4) for w in jaxloss.effective_number_weights(counts, beta=0.5).tolist()]
    [0.7273, 1.2727, 0.0]
  """
  if not 0.0 <= beta < 1.0:
    raise ValueError(f"`beta` must lie in [0, 1); got {beta!r}.")
  n = _checks.float_input("counts.class_pixels", counts[0]).astype(jnp.float32)
  present = n > 0
  # 1 − β^n = −expm1(n log β): no cancellation for β close to 1.
  effective = (-jnp.expm1(n * jnp.log(jnp.float32(beta))) / (1 - beta) if beta
               else jnp.ones_like(n))
  inv = jnp.where(present, 1 / jnp.where(present, effective, 1), 0)
  k = jnp.sum(present, dtype=jnp.float32)
  return safe_div(k * inv, jnp.sum(inv))
