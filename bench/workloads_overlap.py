"""Overlap workloads: soft Dice, Jaccard, Tversky, generalized Dice and the Lovász hinge.

Segmentation shapes as in ``workloads_segmentation.py``: ``[8, 256, 256]``
images (``[8, 128, 128]`` for the Lovász hinge's sorts; ``--quick``:
``[2, 64, 64]``), logits with 12 softmax classes and int32
labels, or 5 sigmoid classes and multi-hot float targets. Every row is value
and gradient with respect to the logits. The naive JAX row is what a user
writes by hand (activation, one-hot, the three sums, the ratio); the optax row
uses ``optax.losses.dice_loss`` where it computes the same loss (Dice with
``smooth = s / 2``, Tversky with the same ``smooth``; both need one-hot
targets, so the row builds them). optax has no Jaccard, no Sudre generalized
Dice (its ``multiclass_generalized_dice_loss`` weights the per-class Dice
*losses*, a different loss) and no Lovász hinge. The torch rows are the same
compositions in torch; the Lovász hinge one is the authors' reference code.
"""

from __future__ import annotations

from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss
from bench.harness import Workload, register

FULL = (8, 256, 256)
QUICK = (2, 64, 64)
C_SOFTMAX = 12
C_SIGMOID = 5
SMOOTH = 1e-5
SPATIAL = (1, 2)  # per image and class: jaxloss's default reduce_axes for [B, H, W, C]
ALPHA, BETA = 0.3, 0.7
LOVASZ_FULL = (8, 128, 128)  # one sort per image: [8, 256, 256] takes ~0.3 s a call on CPU


def _softmax_inputs(quick: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
  shape = QUICK if quick else FULL
  return (2 * rng.standard_normal(shape + (C_SOFTMAX,), dtype=np.float32),
          rng.integers(0, C_SOFTMAX, size=shape).astype(np.int32))


def _sigmoid_inputs(quick: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
  shape = (QUICK if quick else FULL) + (C_SIGMOID,)
  return (2 * rng.standard_normal(shape, dtype=np.float32),
          (rng.uniform(size=shape) < 0.3).astype(np.float32))


def _binary_inputs(quick: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
  shape = QUICK if quick else LOVASZ_FULL
  return (2 * rng.standard_normal(shape, dtype=np.float32),
          (rng.uniform(size=shape) < 0.4).astype(np.int32))


def _softmax_sums(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-(image, class) intersection, prediction and target sums, by hand."""
  p = jax.nn.softmax(x, axis=-1)
  t = jax.nn.one_hot(y, C_SOFTMAX, dtype=p.dtype)
  return jnp.sum(p * t, axis=SPATIAL), jnp.sum(p, axis=SPATIAL), jnp.sum(t, axis=SPATIAL)


# --------------------------------------------------------------------------- Dice


def _naive_dice(x: jax.Array, y: jax.Array) -> jax.Array:
  inter, pred, target = _softmax_sums(x, y)
  return jnp.mean(1 - (2 * inter + SMOOTH) / (pred + target + SMOOTH))


def _torch_dice(torch: ModuleType):
  def loss(x, y):
    p = torch.softmax(x, dim=-1)
    t = torch.nn.functional.one_hot(y.long(), C_SOFTMAX).to(p.dtype)
    inter, den = (p * t).sum(dim=SPATIAL), p.sum(dim=SPATIAL) + t.sum(dim=SPATIAL)
    return (1 - (2 * inter + SMOOTH) / (den + SMOOTH)).mean()
  return loss


register(Workload(
    name="dice",
    family="overlap",
    description="soft Dice on softmax, 12 classes, one Dice per image and class, "
                "reduction='mean'",
    make_inputs=_softmax_inputs,
    impls={
        "jaxloss": lambda x, y: jaxloss.dice_loss(x, y, activation="softmax", smooth=SMOOTH),
        "naive_jax": _naive_dice,
        # optax's smoothing sits next to the intersection: smooth = s / 2 is the same Dice.
        "optax": lambda x, y: jnp.mean(optax.losses.dice_loss(
            x, jax.nn.one_hot(y, C_SOFTMAX), smooth=SMOOTH / 2)),
    },
    torch_factory=_torch_dice,
))


# --------------------------------------------------------------------------- Jaccard

_BATCH = (0, 1, 2)  # one overlap per class over the whole batch (smp's default)


def _naive_jaccard(x: jax.Array, y: jax.Array) -> jax.Array:
  p = jax.nn.sigmoid(x)
  inter = jnp.sum(p * y, axis=_BATCH)
  union = jnp.sum(p, axis=_BATCH) + jnp.sum(y, axis=_BATCH) - inter
  return jnp.mean(1 - (inter + SMOOTH) / (union + SMOOTH))


def _torch_jaccard(torch: ModuleType):
  def loss(x, y):
    p = torch.sigmoid(x)
    inter = (p * y).sum(dim=_BATCH)
    union = p.sum(dim=_BATCH) + y.sum(dim=_BATCH) - inter
    return (1 - (inter + SMOOTH) / (union + SMOOTH)).mean()
  return loss


register(Workload(
    name="jaccard",
    family="overlap",
    description="soft Jaccard (IoU) on sigmoid, 5 multi-hot classes, one IoU per class over "
                "the batch, reduction='mean' (optax has none)",
    make_inputs=_sigmoid_inputs,
    impls={
        "jaxloss": lambda x, y: jaxloss.jaccard_loss(
            x, y, activation="sigmoid", reduce_axes=_BATCH, smooth=SMOOTH),
        "naive_jax": _naive_jaccard,
    },
    torch_factory=_torch_jaccard,
))


# --------------------------------------------------------------------------- Tversky


def _naive_tversky(x: jax.Array, y: jax.Array) -> jax.Array:
  tp, pred, target = _softmax_sums(x, y)
  fp, fn = pred - tp, target - tp
  return jnp.mean(1 - (tp + SMOOTH) / (tp + ALPHA * fp + BETA * fn + SMOOTH))


def _torch_tversky(torch: ModuleType):
  def loss(x, y):
    p = torch.softmax(x, dim=-1)
    t = torch.nn.functional.one_hot(y.long(), C_SOFTMAX).to(p.dtype)
    tp = (p * t).sum(dim=SPATIAL)
    fp, fn = p.sum(dim=SPATIAL) - tp, t.sum(dim=SPATIAL) - tp
    return (1 - (tp + SMOOTH) / (tp + ALPHA * fp + BETA * fn + SMOOTH)).mean()
  return loss


register(Workload(
    name="tversky",
    family="overlap",
    description=f"Tversky on softmax, alpha={ALPHA} beta={BETA}, 12 classes, per image and "
                "class, reduction='mean'",
    make_inputs=_softmax_inputs,
    impls={
        "jaxloss": lambda x, y: jaxloss.tversky_loss(
            x, y, alpha=ALPHA, beta=BETA, activation="softmax", smooth=SMOOTH),
        "naive_jax": _naive_tversky,
        "optax": lambda x, y: jnp.mean(optax.losses.dice_loss(
            x, jax.nn.one_hot(y, C_SOFTMAX), smooth=SMOOTH, alpha=ALPHA, beta=BETA)),
    },
    torch_factory=_torch_tversky,
))


# --------------------------------------------------------------------------- generalized Dice


def _naive_generalized_dice(x: jax.Array, y: jax.Array) -> jax.Array:
  """MONAI's recipe: w = 1 / T², an empty class gets its image's largest finite weight."""
  inter, pred, target = _softmax_sums(x, y)
  w = 1 / (target * target)
  infinite = jnp.isinf(w)
  w = jnp.where(infinite, 0.0, w)
  w = jnp.where(infinite, jnp.max(w, axis=-1, keepdims=True), w)
  num = 2 * jnp.sum(w * inter, axis=-1) + SMOOTH
  den = jnp.sum(w * (pred + target), axis=-1) + SMOOTH
  return jnp.mean(1 - num / den)


def _torch_generalized_dice(torch: ModuleType):
  def loss(x, y):
    p = torch.softmax(x, dim=-1)
    t = torch.nn.functional.one_hot(y.long(), C_SOFTMAX).to(p.dtype)
    inter, pred, target = (p * t).sum(dim=SPATIAL), p.sum(dim=SPATIAL), t.sum(dim=SPATIAL)
    w = 1 / (target * target)
    infinite = torch.isinf(w)
    w = torch.where(infinite, torch.zeros_like(w), w)
    w = torch.where(infinite, w.amax(dim=-1, keepdim=True), w)
    num = 2 * (w * inter).sum(dim=-1) + SMOOTH
    return (1 - num / ((w * (pred + target)).sum(dim=-1) + SMOOTH)).mean()
  return loss


register(Workload(
    name="generalized_dice",
    family="overlap",
    description="generalized Dice (Sudre, w = 1/T^2) on softmax, 12 classes, one loss per "
                "image, reduction='mean' (optax has none)",
    make_inputs=_softmax_inputs,
    impls={
        "jaxloss": lambda x, y: jaxloss.generalized_dice_loss(
            x, y, activation="softmax", smooth=SMOOTH),
        "naive_jax": _naive_generalized_dice,
    },
    torch_factory=_torch_generalized_dice,
))


# --------------------------------------------------------------------------- Lovász hinge


def _naive_lovasz_hinge(x: jax.Array, y: jax.Array) -> jax.Array:
  """The authors' ``lovasz_hinge(per_image=True)`` written in JAX, batched over images."""
  b = x.shape[0]
  logits, labels = x.reshape(b, -1), y.reshape(b, -1).astype(x.dtype)
  errors = 1 - logits * (2 * labels - 1)
  order = jnp.argsort(-errors, axis=-1)
  errors_sorted = jnp.take_along_axis(errors, order, axis=-1)
  gt_sorted = jnp.take_along_axis(labels, order, axis=-1)
  gts = jnp.sum(gt_sorted, axis=-1, keepdims=True)
  intersection = gts - jnp.cumsum(gt_sorted, axis=-1)
  union = gts + jnp.cumsum(1 - gt_sorted, axis=-1)
  jaccard = 1 - intersection / union
  grad = jnp.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=-1)
  return jnp.mean(jnp.sum(jax.nn.relu(errors_sorted) * grad, axis=-1))


def _torch_lovasz_hinge(torch: ModuleType):
  def flat(logits, labels):  # the authors' lovasz_hinge_flat and lovasz_grad
    errors = 1 - logits * (2 * labels - 1)
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    gt_sorted = labels[perm]
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1 - intersection / union
    jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return torch.dot(torch.relu(errors_sorted), jaccard)

  def loss(x, y):
    labels = y.to(x.dtype)
    return torch.stack([flat(x[i].reshape(-1), labels[i].reshape(-1))
                        for i in range(x.shape[0])]).mean()
  return loss


register(Workload(
    name="lovasz_hinge",
    family="overlap",
    description="binary Lovász hinge, per image, reduction='mean' (optax has none)",
    make_inputs=_binary_inputs,
    impls={
        "jaxloss": lambda x, y: jaxloss.lovasz_hinge_loss(x, y),
        "naive_jax": _naive_lovasz_hinge,
    },
    torch_factory=_torch_lovasz_hinge,
    # The authors' gradient is a difference of consecutive Jaccard values, each about 1
    # and apart by about 1/pixels: in float32 each difference carries an absolute error
    # near 6e-8, against gradients of 2e-5 at the full size (7.7e-4 relative measured
    # against torch's sort and cumsum order).
    grad_rtol=2e-3,
))
