"""Cross-entropy family workloads: class-weighted softmax CE (f32 and bf16), BCE, focal.

The headline workload is the segmentation one of the cross-entropy issue:
logits ``[8, 256, 256, 12]``, int32 labels, the 12 median-frequency class
weights from the issue and ``reduction="weighted_mean"``, value and gradient
with respect to the logits. The optax row is what a user builds from optax's
blocks: ``softmax_cross_entropy_with_integer_labels`` times the gathered class
weights, then the weighted mean.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss
from bench.harness import Workload, register

SEG_FULL = (8, 256, 256)
SEG_QUICK = (2, 64, 64)
# Median-frequency weights of the issue (class 11 is void).
CLASS_WEIGHTS_12 = np.array([0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418,
                             0.6823, 6.2478, 7.3614, 0.0], np.float32)
CLASS_WEIGHTS_5 = np.array([0.5, 1.0, 2.0, 1.5, 4.0], np.float32)


def _segmentation_inputs(dtype: Any, num_classes: int, multi_label: bool):
  def make(quick: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    shape = (SEG_QUICK if quick else SEG_FULL) + (num_classes,)
    logits = (2 * rng.standard_normal(shape, dtype=np.float32)).astype(dtype)
    if multi_label:
      labels = (rng.uniform(size=shape) < 0.3).astype(np.float32)
    else:
      labels = rng.integers(0, num_classes, size=shape[:-1]).astype(np.int32)
    return logits, labels
  return make


def _naive_weighted_ce(x: jax.Array, y: jax.Array) -> jax.Array:
  logp = jax.nn.log_softmax(x.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
  w = jnp.asarray(CLASS_WEIGHTS_12)[y]
  return jnp.sum(w * nll) / jnp.sum(w)


def _optax_weighted_ce(x: jax.Array, y: jax.Array) -> jax.Array:
  nll = optax.softmax_cross_entropy_with_integer_labels(x, y)
  w = jnp.asarray(CLASS_WEIGHTS_12)[y].astype(nll.dtype)
  return (jnp.sum(w * nll) / jnp.sum(w)).astype(jnp.float32)


def _torch_weighted_ce(torch: ModuleType):
  weight = torch.tensor(CLASS_WEIGHTS_12)

  def loss(x, y):
    return torch.nn.functional.cross_entropy(x.permute(0, 3, 1, 2).float(), y.long(),
                                             weight=weight)
  return loss


for _dtype, _suffix in ((np.float32, ""), (jnp.bfloat16, "_bf16")):
  register(Workload(
      name=f"softmax_ce{_suffix}",
      family="classification",
      description=("class-weighted softmax CE, 12 classes, reduction='weighted_mean', "
                   f"{np.dtype(_dtype).name} logits"),
      make_inputs=_segmentation_inputs(_dtype, 12, multi_label=False),
      impls={
          "jaxloss": lambda x, y: jaxloss.softmax_cross_entropy(
              x, y, class_weights=CLASS_WEIGHTS_12, reduction="weighted_mean"),
          "naive_jax": _naive_weighted_ce,
          "optax": _optax_weighted_ce,
      },
      torch_factory=_torch_weighted_ce,
      rtol=2e-2 if _suffix else 1e-4,  # optax computes in bf16: about 1% off
  ))


# Image classification: a [batch, classes] logit matrix with integer labels, no class
# weights, the mean over the batch (ImageNet-sized at full size).
CLS_FULL, CLS_QUICK = (4096, 1000), (512, 1000)


def _classification_inputs(quick: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
  n, c = CLS_QUICK if quick else CLS_FULL
  return (2 * rng.standard_normal((n, c), dtype=np.float32),
          rng.integers(0, c, size=n).astype(np.int32))


def _naive_ce_mean(x: jax.Array, y: jax.Array) -> jax.Array:
  logp = jax.nn.log_softmax(x, axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))


register(Workload(
    name="softmax_ce_classes1000",
    family="classification",
    description="softmax CE with integer labels, [batch, 1000] logits (image classification), "
                "reduction='mean'",
    make_inputs=_classification_inputs,
    impls={
        "jaxloss": lambda x, y: jaxloss.softmax_cross_entropy(x, y),
        "naive_jax": _naive_ce_mean,
        "optax": lambda x, y: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(x, y)),
    },
    torch_factory=lambda torch: lambda x, y: torch.nn.functional.cross_entropy(x, y.long()),
))


_CW5 = CLASS_WEIGHTS_5.reshape(1, 1, 1, -1)  # explicit broadcast (strict rank promotion)


def _naive_bce(x: jax.Array, y: jax.Array) -> jax.Array:
  p = jax.nn.sigmoid(x)
  per = -(y * jnp.log(p) + (1 - y) * jnp.log1p(-p))
  return jnp.mean(_CW5 * per)


def _torch_bce(torch: ModuleType):
  weight = torch.tensor(CLASS_WEIGHTS_5)
  return lambda x, y: torch.nn.functional.binary_cross_entropy_with_logits(x, y, weight=weight)


register(Workload(
    name="sigmoid_bce",
    family="classification",
    description="multi-label sigmoid BCE, 5 classes with class weights, reduction='mean'",
    make_inputs=_segmentation_inputs(np.float32, 5, multi_label=True),
    impls={
        "jaxloss": lambda x, y: jaxloss.sigmoid_binary_cross_entropy(
            x, y, class_weights=CLASS_WEIGHTS_5),
        "naive_jax": _naive_bce,
        "optax": lambda x, y: jnp.mean(
            _CW5 * optax.sigmoid_binary_cross_entropy(x, y)),
    },
    torch_factory=_torch_bce,
    rtol=1e-3,
))


def _naive_softmax_focal(x: jax.Array, y: jax.Array) -> jax.Array:
  logp = jnp.take_along_axis(jax.nn.log_softmax(x, axis=-1), y[..., None], axis=-1)[..., 0]
  return jnp.mean(-((1 - jnp.exp(logp)) ** 2) * logp)


register(Workload(
    name="softmax_focal",
    family="classification",
    description="softmax focal loss, gamma=2, 12 classes, reduction='mean' (optax has none)",
    make_inputs=_segmentation_inputs(np.float32, 12, multi_label=False),
    impls={
        "jaxloss": lambda x, y: jaxloss.softmax_focal_loss(x, y, gamma=2.0),
        "naive_jax": _naive_softmax_focal,
    },
    rtol=1e-3,
))


def _naive_sigmoid_focal(x: jax.Array, y: jax.Array) -> jax.Array:
  p = jax.nn.sigmoid(x)
  ce = -(y * jnp.log(p) + (1 - y) * jnp.log1p(-p))
  p_t = p * y + (1 - p) * (1 - y)
  return jnp.mean((0.25 * y + 0.75 * (1 - y)) * (1 - p_t) ** 2 * ce)


register(Workload(
    name="sigmoid_focal",
    family="classification",
    description="sigmoid focal loss, gamma=2, alpha=0.25, 5 classes, reduction='mean'",
    make_inputs=_segmentation_inputs(np.float32, 5, multi_label=True),
    impls={
        "jaxloss": lambda x, y: jaxloss.sigmoid_focal_loss(x, y, gamma=2.0, alpha=0.25),
        "naive_jax": _naive_sigmoid_focal,
        "optax": lambda x, y: jnp.mean(optax.sigmoid_focal_loss(x, y, alpha=0.25, gamma=2.0)),
    },
    rtol=1e-3,
))
