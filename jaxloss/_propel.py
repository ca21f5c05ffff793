"""PROPEL: a probabilistic regression loss for a mixture of axis-aligned Gaussians.

The kernel (log-space value, hand-written ``custom_vjp``, a sweep over the
pair grid one column at a time) lives in :mod:`jaxloss._propel_kernels`; this
module holds the public entry point, its checks and the helpers.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._propel_kernels import propel_core, propel_reference
from jaxloss._reduction import reduce_elements

GT_NORMALIZATIONS = ("exact", "reference")


def _split(name: str, x: jax.Array) -> int:
  if x.ndim < 2 or x.shape[-1] == 0 or x.shape[-1] % 2:
    raise ValueError(
        f"`{name}` has shape {tuple(x.shape)}; expected [..., I, 2*D]: I mixture components, "
        f"each with D means followed by D standard deviations (a last axis of even size > 0)."
    )
  return x.shape[-1] // 2


def split_mixture_outputs(outputs: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
  r"""Splits network outputs ``[..., I, 2D]`` into means and standard deviations.

  The first ``D`` entries of the last axis are the means, the last ``D`` the raw
  standard deviations; as in :func:`propel_loss` only their square matters, so
  the standard deviations returned are their absolute values.

  Args:
    outputs: ``[..., I, 2D]`` floating array.

  Returns:
    ``(means, stds)``, each ``[..., I, D]``, in the dtype of ``outputs``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> means, stds = jaxloss.split_mixture_outputs(jnp.array([[0.5, 1.0, -0.2, 0.3]]))
    >>> means.tolist(), [round(v, 4) for v in stds[0].tolist()]
    ([[0.5, 1.0]], [0.2, 0.3])
  """
  x = _checks.float_input("outputs", outputs)
  d = _split("outputs", x)
  return x[..., :d], jnp.abs(x[..., d:])


def mixture_mean_and_variance(
    means: jax.typing.ArrayLike,
    stds: jax.typing.ArrayLike,
    mixture_logits: jax.typing.ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
  r"""Point estimate and its uncertainty from a mixture, by the law of total variance.

  With weights :math:`\pi = \mathrm{softmax}(\text{mixture\_logits})` (or
  :math:`1/I`), per dimension:

  .. math::
    \bar\mu = \sum_i \pi_i \mu_i, \qquad
    \operatorname{Var} = \sum_i \pi_i \sigma_i^2 + \sum_i \pi_i (\mu_i - \bar\mu)^2

  (the mean of the variances plus the variance of the means; the second form
  avoids the cancellation of :math:`E[x^2] - \bar\mu^2`).

  Args:
    means: ``[..., I, D]`` component means.
    stds: ``[..., I, D]`` component standard deviations (their sign is ignored).
    mixture_logits: optional ``[..., I]`` logits of the mixture weights.

  Returns:
    ``(mean, variance)``, each ``[..., D]``, float32 (float64 for float64 inputs).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> mean, var = jaxloss.mixture_mean_and_variance(
    ...     jnp.array([[0.0], [2.0]]), jnp.array([[1.0], [1.0]]))
    >>> mean.tolist(), var.tolist()
    ([1.0], [2.0])
  """
  mu = _checks.float_input("means", means)
  sd = _checks.float_input("stds", stds)
  if mu.ndim < 2 or sd.shape != mu.shape:
    raise ValueError(f"`means` has shape {tuple(mu.shape)} and `stds` has shape "
                     f"{tuple(sd.shape)}; expected the same shape [..., I, D].")
  lg = None if mixture_logits is None else _checks.float_input("mixture_logits", mixture_logits)
  if lg is not None and lg.shape != mu.shape[:-1]:
    raise ValueError(f"`mixture_logits` has shape {tuple(lg.shape)}; expected "
                     f"{tuple(mu.shape[:-1])}, the shape of `means` {tuple(mu.shape)} "
                     "without its last axis.")
  dtype = _checks.compute_dtype(mu, sd, lg)
  mu, sd = mu.astype(dtype), sd.astype(dtype)
  if lg is None:
    pi = jnp.full(mu.shape[:-1] + (1,), 1 / mu.shape[-2], dtype)
  else:
    pi = jax.nn.softmax(lg.astype(dtype), axis=-1)[..., None]
  mean = jnp.sum(pi * mu, axis=-2)
  dev = mu - mean[..., None, :]
  return mean, jnp.sum(pi * (sd * sd + dev * dev), axis=-2)


def gaussian_overlap(
    mean_a: jax.typing.ArrayLike,
    var_a: jax.typing.ArrayLike,
    mean_b: jax.typing.ArrayLike,
    var_b: jax.typing.ArrayLike,
) -> jax.Array:
  r"""Log of the L2 inner product of two axis-aligned Gaussians.

  .. math::
    \log G(a, b) = \log \int \mathcal N(x; \mu_a, v_a)\, \mathcal N(x; \mu_b, v_b)\, dx
    = -\frac12 \sum_d \Big[\log\big(2\pi (v_{ad} + v_{bd})\big)
      + \frac{(\mu_{ad} - \mu_{bd})^2}{v_{ad} + v_{bd}}\Big]

  computed in log space, so it stays finite for any distance and dimension
  (:math:`G` itself underflows to 0 a few dozen standard deviations apart, or
  overflows for many dimensions with small variances). ``G(a, a)`` is
  :math:`\|p_a\|^2 = \prod_d (4\pi v_{ad})^{-1/2}`. Inputs broadcast by NumPy
  rules; the last axis is the dimension axis ``D`` and is summed.

  Args:
    mean_a: ``[..., D]`` means of the first Gaussian(s).
    var_a: ``[..., D]`` variances (not standard deviations), ``var_a + var_b > 0``.
    mean_b: ``[..., D]`` means of the second Gaussian(s).
    var_b: ``[..., D]`` variances.

  Returns:
    ``log G``, the broadcast shape without its last axis; float32 (float64 for
    float64 inputs).

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> mu, var = jnp.zeros(3), jnp.full(3, 0.25)
    >>> round(float(jaxloss.gaussian_overlap(mu, var, mu, var)), 4)  # -1.5 log(4π·0.25)
    -1.7171
  """
  args = [_checks.float_input(n, x) for n, x in
          (("mean_a", mean_a), ("var_a", var_a), ("mean_b", mean_b), ("var_b", var_b))]
  if any(x.ndim == 0 for x in args):
    raise ValueError("`mean_a`, `var_a`, `mean_b` and `var_b` need a last (dimension) axis; "
                     f"got shapes {[tuple(x.shape) for x in args]}.")
  try:
    shape = jnp.broadcast_shapes(*(x.shape for x in args))
  except ValueError as e:
    raise ValueError(f"`mean_a`, `var_a`, `mean_b` and `var_b` have shapes "
                     f"{[tuple(x.shape) for x in args]}, which do not broadcast.") from e
  dtype = _checks.compute_dtype(*args)
  ma, va, mb, vb = (jnp.broadcast_to(x.astype(dtype), shape) for x in args)
  var = va + vb
  dm = ma - mb
  return -0.5 * jnp.sum(jnp.log((2 * math.pi) * var) + dm * dm / var, axis=-1)


def propel_loss(
    outputs: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    *,
    sigma: jax.typing.ArrayLike = 0.1,
    mixture_logits: jax.typing.ArrayLike | None = None,
    gt_normalization: str = "exact",
    weights: jax.typing.ArrayLike | None = None,
    where: jax.typing.ArrayLike | None = None,
    reduction: str = "mean",
    axis_name: str | None = None,
) -> jax.Array:
  r"""PROPEL: a mixture of axis-aligned Gaussians against a Gaussian at the target.

  PROPEL (Asad et al., ICPR 2020) lets a network output a mixture
  :math:`p = \sum_i \pi_i \mathcal N(\mu_i, \operatorname{diag} v_i)` of
  :math:`I` Gaussians in :math:`D` dimensions, and compares it with
  :math:`q = \mathcal N(t, \sigma^2 \mathbf 1)` through L2 inner products.
  With :math:`G(a, b) = \int \mathcal N_a \mathcal N_b` (see
  :func:`gaussian_overlap`) and :math:`H(v) = G(a, a) = \prod_d (4\pi v_d)^{-1/2}`:

  .. math::
    T_1 = 2 \sum_i \pi_i G(q, i), \qquad
    T_2 = H(\sigma^2 \mathbf 1) + \sum_i \sum_j \pi_i \pi_j G(i, j), \qquad
    l = \log_{10} T_2 - \log_{10} T_1

  so :math:`l = \log_{10}\big((\|p\|^2 + \|q\|^2) / 2\langle p, q\rangle\big) \ge 0`,
  with :math:`l = 0` exactly when the mixture equals the target Gaussian. The
  per-element losses :math:`l` (one per example, shape ``...``) are reduced by
  :func:`jaxloss.reduce_loss` with ``weights``, ``where`` and ``reduction``.

  Options:

  * ``mixture_logits``: learned weights :math:`\pi = \mathrm{softmax}` of them
    replace :math:`1/I` everywhere (the original has equal weights only).
  * ``gt_normalization="exact"`` uses :math:`H(\sigma^2\mathbf 1) = (4\pi\sigma^2)^{-D/2}`.
    ``"reference"`` reproduces torchpropel, which evaluates the target's
    self-term as if :math:`D = 1`, :math:`(4\pi\sigma^2)^{-1/2}`, whatever
    :math:`D` is; then :math:`l` can be negative (a perfect prediction scores
    :math:`\log_{10}\big((1 + (4\pi\sigma^2)^{(D-1)/2}) / 2\big)`, -0.2496 at
    :math:`D = 3`, :math:`\sigma = 0.1`) and its minimum is not at the target.
    Use it only to reproduce published numbers. For :math:`D = 1` both agree.

  Equals ``torchpropel.PROPEL(sigma=σ, reduction=r)(outputs, targets)``
  (torchpropel 0.0.3, formerly ``propel_loss``) for ``outputs`` ``[B, I, 2D]``, I ≥ 2,
  with ``gt_normalization="reference"`` and ``reduction=r`` in ``"mean"``,
  ``"sum"``, ``"none"`` (torch returns ``[1, B]`` for the last), up to its
  ``eps`` clamps and its overflow (torch keeps ``sigma`` in float32).

  Numerics: everything is in log space and centred on the exact target
  self-term; the pair sum uses :math:`G(i,j) \le \sqrt{H_i H_j}`, so no term
  overflows and no logarithm is taken per pair. The loss and its gradient stay
  finite for far targets, :math:`D` in the hundreds and :math:`\sigma` down to
  1e-6 in float32, as long as :math:`(\mu - t)^2 / (s^2 + \sigma^2)` is
  representable. One floor: variances are :math:`s^2 + 10^{-30}`, so a raw std
  of exactly 0 gives no log(0); it changes no float32 variance above 1e-22.

  The value and gradient are a hand-written ``custom_vjp``, so ``jax.jvp``
  and ``jax.jacfwd`` of the loss raise JAX's ``TypeError``; ``jax.hessian``
  (forward over reverse) and ``jax.jacrev(jax.jacrev(f))`` work, the backward
  pass being differentiable again. Both passes sweep the full
  :math:`I \times I` grid one column at a time (no index lists), the backward
  pass over batch tiles that stay in cache; it keeps three numbers per example
  as residuals, and memory is O(B·I·D): never an ``[B, I, I]`` or
  ``[B, I(I-1)/2, D]`` array. ``outputs``, ``targets``, ``mixture_logits`` and
  ``sigma`` all get gradients.

  Args:
    outputs: ``[..., I, 2D]`` network outputs: per component ``D`` means then
      ``D`` raw standard deviations (variance = their square, sign ignored).
    targets: ``[..., D]`` ground truth.
    sigma: the ground-truth standard deviation, a positive scalar (it gets a
      gradient too, should it be learned).
    mixture_logits: optional ``[..., I]`` logits of the mixture weights.
    gt_normalization: ``"exact"`` or ``"reference"`` (see above).
    weights: optional per-example weights (see :func:`jaxloss.reduce_loss`).
    where: optional boolean mask over examples.
    reduction: see :func:`jaxloss.reduce_loss`.
    axis_name: optional mapped axis name to ``psum`` the reduction over.

  Returns:
    The reduced loss, or per-example losses (shape ``...``) for ``"none"``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import jaxloss
    >>> target = jnp.array([[0.0, 0.0, 0.0]])
    >>> perfect = jnp.array([[[0.0, 0.0, 0.0, 0.1, 0.1, 0.1]]])  # one component
    >>> float(jaxloss.propel_loss(perfect, target, sigma=0.1))
    0.0
    >>> round(float(jaxloss.propel_loss(perfect, target, sigma=0.1,
    ...                                 gt_normalization="reference")), 4)
    -0.2496
    >>> two = jnp.array([[[0.1, 0.0, 0.0, 0.1, 0.1, 0.1],
    ...                   [-0.1, 0.0, 0.0, 0.2, 0.1, 0.1]]])
    >>> round(float(jaxloss.propel_loss(two, target, sigma=0.1)), 4)
    0.0699
  """
  return _propel(outputs, targets, sigma, mixture_logits, gt_normalization, weights, where,
                 reduction, axis_name, custom=True)


# Jitted so an eager call compiles the column sweep once per shape (op by op it
# took ~2000x longer); under an outer jit the inner one is inlined.
_jitted_core = jax.jit(propel_core, static_argnums=4)


def _propel(outputs, targets, sigma, mixture_logits, gt_normalization, weights, where,
            reduction, axis_name, custom: bool) -> jax.Array:
  """The data path of :func:`propel_loss`; ``custom=False`` autodiffs the same forward."""
  x = _checks.float_input("outputs", outputs)
  y = _checks.real_input("targets", targets)
  _checks.check_reduction(reduction)
  if gt_normalization not in GT_NORMALIZATIONS:
    raise ValueError(f"`gt_normalization` must be one of {GT_NORMALIZATIONS}; "
                     f"got {gt_normalization!r}.")
  d = _split("outputs", x)
  num = _checks.check_axis_size("outputs", x, x.ndim - 2, "mixture-component axis I")
  batch = tuple(x.shape[:-2])
  if tuple(y.shape) != batch + (d,):
    raise ValueError(f"`targets` has shape {tuple(y.shape)}; expected {batch + (d,)}: the batch "
                     f"shape of `outputs` {tuple(x.shape)} followed by D = {d}.")
  lg = None
  if mixture_logits is not None:
    lg = _checks.float_input("mixture_logits", mixture_logits)
    if tuple(lg.shape) != batch + (num,):
      raise ValueError(f"`mixture_logits` has shape {tuple(lg.shape)}; expected "
                       f"{batch + (num,)}, the shape of `outputs` {tuple(x.shape)} without "
                       "its last axis.")
  _checks.check_static_positive("sigma", sigma)
  sg = _checks.real_input("sigma", sigma)
  if sg.ndim:
    raise ValueError(f"`sigma` must be a scalar; got shape {tuple(sg.shape)}.")
  dtype = _checks.compute_dtype(x, y, lg)
  w, m = _checks.weights_and_mask(weights, where, batch, dtype)
  x, y, sg = x.astype(dtype), y.astype(dtype), sg.astype(dtype)
  lg = None if lg is None else lg.astype(dtype)
  _checks.check_finite("outputs", x, where=None if m is None else m[..., None, None])
  _checks.check_finite("targets", y, where=None if m is None else m[..., None])
  if lg is not None:
    _checks.check_finite("mixture_logits", lg, where=None if m is None else m[..., None])
  if m is not None:
    # Double-where: masked examples become a harmless component (mean 0, std 1)
    # and target 0 *before* any arithmetic, so NaN under the mask stays out of
    # the value and the gradient.
    fill = jnp.concatenate([jnp.zeros((d,), dtype), jnp.ones((d,), dtype)])
    x = jnp.where(m[..., None, None], x, fill.reshape((1,) * (len(batch) + 1) + (2 * d,)))
    y = jnp.where(m[..., None], y, jnp.zeros((), dtype))
    if lg is not None:
      lg = jnp.where(m[..., None], lg, jnp.zeros((), dtype))
  n = _checks.static_size(batch)
  x = x.reshape(n, num, 2 * d)
  y = y.reshape(n, d)
  lg = None if lg is None else lg.reshape(n, num)
  core = _jitted_core if custom else propel_reference
  loss = core(x, y, lg, sg, gt_normalization == "exact").reshape(batch)
  return reduce_elements(loss, w, m, reduction, axis_name)
