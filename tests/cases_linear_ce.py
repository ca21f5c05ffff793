"""Contract cases of the fused linear cross-entropy (joined to the registry by ``loss_registry``).

Input 0 is ``hidden`` ``[B, 3, H]``, input 1 the integer labels ``[B, 3]``; the kernel,
bias and class weights are fixed arrays closed over (the contract differentiates input 0
and shards the inputs along their batch axis, which a ``[H, V]`` kernel does not have).
The logits are soft-capped at 6 after the bias.
A chunk of 4 columns does not divide V = 11: two full chunks and a remainder of 3.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from loss_registry import Inputs, LossCase

from jaxloss._linear_ce import linear_softmax_cross_entropy

H, V = 5, 11
_rng = np.random.default_rng(1313)
KERNEL = (_rng.normal(size=(H, V)) / 1.5).astype(np.float32)
BIAS = (0.3 * _rng.normal(size=V)).astype(np.float32)
CLASS_WEIGHTS = _rng.uniform(0.25, 2.0, size=V).astype(np.float32)
CLASS_WEIGHTS[2] = 0.0


def _inputs(rng: np.random.Generator, batch: int, dtype: Any) -> Inputs:
  hidden = rng.normal(size=(batch, 3, H)).astype(dtype)
  return hidden, rng.integers(0, V, size=(batch, 3)).astype(np.int32)


def _extremes(rng: np.random.Generator, batch: int) -> Inputs:
  hidden = rng.choice([-1e4, 1e4, 0.0], size=(batch, 3, H)).astype(np.float32)
  return hidden, rng.integers(0, V, size=(batch, 3)).astype(np.int32)


def _fused(hidden, labels, **kwargs):
  return linear_softmax_cross_entropy(hidden, KERNEL, labels, bias=BIAS, chunk_size=4,
                                      logit_soft_cap=6.0, **kwargs)


# One case with every option of the loss (the contract's cost is per case).
CASES = [
    LossCase("linear_softmax_cross_entropy", _fused, _inputs, _extremes, forward_mode=False,
             kwargs={"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.1, "z_loss": 1e-3},
             label_weights=lambda a: CLASS_WEIGHTS[a[1]], label_arg=1, num_classes=V,
             ignore_index=True, pixel_axes=1,
             scalar_options={"label_smoothing": 0.1, "z_loss": 1e-3}),
]
