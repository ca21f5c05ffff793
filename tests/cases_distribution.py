"""Contract cases for the ordered-distribution losses (EMD)."""

from __future__ import annotations

from typing import Any

import numpy as np
from loss_registry import Inputs, LossCase, limit_logits

import jaxloss

BINS = 10


def _histograms(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  p = rng.dirichlet(np.ones(BINS), size=(batch, 2)).astype(dtype)
  q = rng.dirichlet(np.ones(BINS), size=(batch, 2)).astype(dtype)
  return p, q


def _off_kink_histograms(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  # For r = 1, |Δ_N| (the total-mass mismatch, 0 for normalised inputs) has a kink
  # that finite differences off the simplex would straddle; 10% less target mass
  # keeps the numerical gradient check away from it.
  p, q = _histograms(rng, batch, np.float64)
  return p.astype(dtype), (0.9 * q).astype(dtype)


def _extremes(rng: np.random.Generator, batch: int) -> Inputs:
  p = np.zeros((batch, 2, BINS), np.float32)
  q = np.zeros((batch, 2, BINS), np.float32)
  p[:, 0, 0] = 1.0  # all mass at opposite ends
  q[:, 0, -1] = 1.0
  p[:, 1] = q[:, 1] = 1.0 / BINS  # identical: the gradient at p == q
  return p, q


def _logit_inputs(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  x = (2 * rng.normal(size=(batch, BINS))).astype(dtype)
  return x, rng.dirichlet(np.ones(BINS), size=batch).astype(dtype)


def _logit_extremes(rng: np.random.Generator, batch: int) -> Inputs:
  # ±3e38 logits: the softmax saturates, the distance between histograms stays bounded.
  x = limit_logits(rng, (batch, BINS)).astype(np.float32)
  q = np.zeros((batch, BINS), np.float32)
  q[:, 3] = 1.0
  return x, q


_r_options = {"infinite_options": ("r",)}  # r = inf is the sup-norm

CASES = [
    LossCase("earth_mover_distance[r=2]", jaxloss.earth_mover_distance, _histograms, _extremes,
             class_axis=-1, forward_mode=False, scalar_options={"r": 2.0}, **_r_options),
    LossCase("earth_mover_distance[r=1,bins]", jaxloss.earth_mover_distance, _off_kink_histograms,
             _extremes, class_axis=-1, forward_mode=False,
             kwargs={"r": 1.0, "bin_positions": np.linspace(0.0, 9.0, BINS) ** 1.5},
             scalar_options={"r": 1.0}, single_class=False, checked_inputs=_histograms,
             **_r_options),
    LossCase("earth_mover_distance[r=3,softmax]", jaxloss.earth_mover_distance, _logit_inputs,
             _logit_extremes, class_axis=-1, forward_mode=False,
             kwargs={"r": 3.0, "activation": "softmax"}, scalar_options={"r": 3.0},
             **_r_options),
]
