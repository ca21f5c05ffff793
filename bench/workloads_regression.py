"""Regression workloads: per-example weighted MSE, MAE and Huber, value and gradient.

Each takes predictions and targets ``f32[B, D]`` and weights ``f32[B]`` with
``reduction="weighted_mean"``, i.e. ``Σ_ij w_i l_ij / (D Σ_i w_i)``. The
peers are the composition a user would write by hand and, where optax has the
per-element loss, optax's (optax has no absolute error, so MAE has no optax
row).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss
from bench.harness import Workload, register

FULL_SHAPE = (4096, 1024)
QUICK_SHAPE = (1024, 512)
DELTA = 1.0
REDUCTION = "weighted_mean"


def make_inputs(quick: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
  """Predictions, targets ``f32[B, D]`` and weights ``f32[B]`` in ``[0, 2)``.

  Errors are N(0, 2), so both Huber branches are well populated.
  """
  b, d = QUICK_SHAPE if quick else FULL_SHAPE
  predictions = rng.standard_normal((b, d), dtype=np.float32)
  targets = rng.standard_normal((b, d), dtype=np.float32)
  weights = rng.uniform(0.0, 2.0, size=b).astype(np.float32)
  return predictions, targets, weights


def naive_weighted_mean(per_element: jax.Array, weights: jax.Array) -> jax.Array:
  """What a user writes for the weighted mean of ``[B, D]`` losses with ``[B]`` weights."""
  return jnp.sum(weights[:, None] * per_element) / (jnp.sum(weights) * per_element.shape[1])


def naive_huber(e: jax.Array, delta: float) -> jax.Array:
  """The textbook two-branch Huber loss of the error ``e``."""
  abs_e = jnp.abs(e)
  return jnp.where(abs_e <= delta, 0.5 * e**2, delta * (abs_e - 0.5 * delta))


def _torch(per_element: Callable[[ModuleType, Any, Any], Any]
           ) -> Callable[[ModuleType], Callable[..., Any]]:
  """A torch factory: ``per_element(torch, p, t)`` reduced by the weighted mean."""

  def factory(torch: ModuleType) -> Callable[..., Any]:
    def loss(p: Any, t: Any, w: Any) -> Any:
      per = per_element(torch, p, t)
      return (w[:, None] * per).sum() / (w.sum() * per.shape[1])

    return loss

  return factory


register(Workload(
    name="mse",
    family="regression",
    description=f"weighted squared error, reduction={REDUCTION!r}",
    make_inputs=make_inputs,
    impls={
        "jaxloss": lambda p, t, w: jaxloss.mean_squared_error(
            p, t, weights=w, reduction=REDUCTION),
        "naive_jax": lambda p, t, w: naive_weighted_mean((p - t) ** 2, w),
        "optax": lambda p, t, w: naive_weighted_mean(optax.losses.squared_error(p, t), w),
    },
    torch_factory=_torch(
        lambda torch, p, t: torch.nn.functional.mse_loss(p, t, reduction="none")),
))

register(Workload(
    name="mae",
    family="regression",
    description=f"weighted absolute error, reduction={REDUCTION!r} (optax has none)",
    make_inputs=make_inputs,
    impls={
        "jaxloss": lambda p, t, w: jaxloss.mean_absolute_error(
            p, t, weights=w, reduction=REDUCTION),
        "naive_jax": lambda p, t, w: naive_weighted_mean(jnp.abs(p - t), w),
    },
    torch_factory=_torch(
        lambda torch, p, t: torch.nn.functional.l1_loss(p, t, reduction="none")),
))

register(Workload(
    name="huber",
    family="regression",
    description=f"weighted Huber loss, delta={DELTA}, reduction={REDUCTION!r}",
    make_inputs=make_inputs,
    impls={
        "jaxloss": lambda p, t, w: jaxloss.huber_loss(
            p, t, delta=DELTA, weights=w, reduction=REDUCTION),
        "naive_jax": lambda p, t, w: naive_weighted_mean(naive_huber(p - t, DELTA), w),
        "optax": lambda p, t, w: naive_weighted_mean(
            optax.losses.huber_loss(p, t, delta=DELTA), w),
    },
    torch_factory=_torch(lambda torch, p, t: torch.nn.functional.huber_loss(
        p, t, reduction="none", delta=DELTA)),
))
