"""Segmentation workloads: sigmoid BCE + batch Dice, softmax CE + Dice, Lovász-softmax.

The headline is the segmentation issue's: ``sigmoid_bce_dice_loss`` on logits
and multi-hot targets ``[8, 256, 256, 5]`` with per-class weights and one Dice
per class over the batch, value and gradient. The naive JAX row is the
composition a user writes (sigmoid, log-sigmoid BCE, Dice sums); optax has no
batch-level multi-label Dice with class weights, so it has no row here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss
from bench.harness import Workload, register

FULL = (8, 256, 256)
QUICK = (2, 64, 64)
CW5 = np.array([0.5, 1.0, 2.0, 1.5, 4.0], np.float32)
CW12 = np.array([0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823,
                 6.2478, 7.3614, 0.0], np.float32)
SMOOTH = 1e-5


def _multi_hot(quick: bool, rng: np.random.Generator):
  shape = (QUICK if quick else FULL) + (5,)
  return (2 * rng.standard_normal(shape, dtype=np.float32),
          (rng.uniform(size=shape) < 0.3).astype(np.float32))


def _int_labels(num_classes: int, spatial=None):
  def make(quick: bool, rng: np.random.Generator):
    shape = spatial(quick) if spatial else (QUICK if quick else FULL)
    return (2 * rng.standard_normal(shape + (num_classes,), dtype=np.float32),
            rng.integers(0, num_classes, size=shape).astype(np.int32))
  return make


def _naive_bce_dice(x, y):
  cw = jnp.asarray(CW5).reshape(1, 1, 1, -1)
  bce = jnp.mean(cw * (jax.nn.softplus(x) - x * y))
  p = jax.nn.sigmoid(x)
  inter = jnp.sum(p * y, axis=(0, 1, 2))
  dice = 1 - (2 * inter + SMOOTH) / (jnp.sum(p, axis=(0, 1, 2)) + jnp.sum(y, axis=(0, 1, 2))
                                     + SMOOTH)
  return bce + jnp.mean(jnp.asarray(CW5) * dice)


register(Workload(
    name="bce_dice",
    family="segmentation",
    description="sigmoid BCE + batch Dice, 5 classes with class weights, reduction='mean'",
    make_inputs=_multi_hot,
    impls={
        "jaxloss": lambda x, y: jaxloss.sigmoid_bce_dice_loss(
            x, y, class_weights=CW5, reduce_axes=(0, 1, 2), smooth=SMOOTH),
        "naive_jax": _naive_bce_dice,
    },
    rtol=1e-3,
))


def _naive_ce_dice(x, y):
  logp = jax.nn.log_softmax(x, axis=-1)
  onehot = jax.nn.one_hot(y, 12)
  cw = jnp.asarray(CW12).reshape(1, 1, 1, -1)  # explicit broadcasts (strict rank promotion)
  ce = -jnp.mean(jnp.sum(cw * onehot * logp, axis=-1))
  p = jnp.exp(logp)
  inter = jnp.sum(p * onehot, axis=(1, 2))
  dice = 1 - (2 * inter + SMOOTH) / (jnp.sum(p, axis=(1, 2)) + jnp.sum(onehot, axis=(1, 2))
                                     + SMOOTH)
  return ce + jnp.mean(cw[0, 0] * dice)


register(Workload(
    name="ce_dice",
    family="segmentation",
    description="softmax CE + per-image Dice, 12 classes with class weights, reduction='mean'",
    make_inputs=_int_labels(12),
    impls={
        "jaxloss": lambda x, y: jaxloss.softmax_ce_dice_loss(
            x, y, class_weights=CW12, smooth=SMOOTH),
        "naive_jax": _naive_ce_dice,
    },
    rtol=1e-3,
))


register(Workload(
    name="lovasz_softmax",
    family="segmentation",
    description="Lovász-softmax over the batch, 12 classes, present classes",
    make_inputs=_int_labels(12, lambda quick: (2, 32, 32) if quick else (4, 128, 128)),
    impls={"jaxloss": lambda x, y: jaxloss.lovasz_softmax_loss(x, y, activation="softmax")},
))
