"""Class weights for a rare class: a small Flax (nnx) segmentation net under three objectives.

The data are synthetic and seeded: noisy 32x32 RGB images with four classes,
background, red discs, green bars and small blue squares, the *rare* class at
about 1.8% of the pixels. The same conv net, from the same initialisation and
with the same batches, is trained with Adam and L2 regularisation (the weight
decay of ``torch.optim.Adam(weight_decay=...)``) under three objectives:

1. ``softmax_cross_entropy``, unweighted. The rare class earns 1.8% of the
   loss, too little to pay for the weights that would detect it, and the net
   never predicts it;
2. ``softmax_cross_entropy`` with ``class_weights=median_frequency_weights(
   class_pixel_counts(train_labels, 4))``: SegNet's median frequency
   balancing, counted once over the training set, weighs a rare pixel like
   15 disc or 34 background pixels and brings the class back: nearly all its
   pixels are found, at the price of a rim of false positives around each square;
3. ``softmax_ce_dice_loss`` (CE + soft Dice, MONAI's ``DiceCELoss``): its
   Dice part is a mean over classes, so the rare class counts as much as any.

The L2 term is what makes the unweighted net give the class up: with
``L2 = 0`` it learns the squares after some 150 steps (seed 0: rare IoU 0.77,
against 0.63 with the weights, whose extra recall then costs more precision
than it gains). Weighting rescues a class that regularisation or a short
schedule would sacrifice; it does not sharpen one that is already found.

The script prints the held-out per-class IoU (``confusion_matrix``, then
``iou_per_class`` and ``mean_iou``) and saves ``output/segmentation_flax.png``:
the IoUs as bars labelled with their values, and ``class_breakdown`` of the
pixel cross-entropy during training, the curve that shows the rare class
failing while the mean loss looks fine. While it trains it prints a progress
line every 100 steps.

Run it with ``python examples/segmentation_flax.py`` (about a minute on a
two-core CPU). ``--seed N`` changes data and initialisation, ``--out DIR`` the
folder of the PNG, and ``--tiny`` is the few-second smoke test of
``tests/test_examples.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from _common import Progress, format_table, parse_args, save_figure
from flax import nnx

import jaxloss

matplotlib.use("Agg")

CLASSES = ("background", "disc", "bar", "rare square")
NUM_CLASSES = len(CLASSES)
OBJECTIVES = ("CE", "CE + median-freq weights", "CE + Dice")
FULL = dict(size=32, n_train=1024, n_test=256, batch=32, steps=400, width=16)
TINY = dict(size=16, n_train=32, n_test=16, batch=8, steps=4, width=4)
LEARNING_RATE, L2 = 3e-3, 0.02


def make_dataset(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
  """``n`` noisy RGB images ``[n, size, size, 3]`` float32 and label maps ``[n, size, size]``.

  Two or three red discs, two or three green bars, then one or two small blue
  squares (3x3 or 4x4, the rare class) drawn on top; Gaussian noise of std 0.5.
  """
  images = np.zeros((n, size, size, 3), np.float32)
  labels = np.zeros((n, size, size), np.int32)
  yy, xx = np.mgrid[:size, :size]
  for i in range(n):
    for _ in range(rng.integers(2, 4)):
      cy, cx, r = *rng.uniform(4, size - 4, 2), rng.uniform(5, 9)
      labels[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    for _ in range(rng.integers(2, 4)):  # horizontal or vertical
      long, short = rng.integers(size // 3, size // 2), rng.integers(3, 6)
      h, w = (long, short) if rng.random() < 0.5 else (short, long)
      y, x = rng.integers(0, size - h), rng.integers(0, size - w)
      labels[i, y:y + h, x:x + w] = 2
    for _ in range(rng.integers(1, 3)):
      s = rng.integers(3, 5)
      y, x = rng.integers(0, size - s), rng.integers(0, size - s)
      labels[i, y:y + s, x:x + s] = 3
    for c in range(1, NUM_CLASSES):  # class c in colour channel c - 1
      images[i, :, :, c - 1][labels[i] == c] = 1.0
  images += rng.normal(0.0, 0.5, images.shape).astype(np.float32)
  return images, labels


class SegNet(nnx.Module):
  """Four 3x3 convolutions (dilations 1, 2, 4, 1) and a 1x1 classifier: logits ``[B, H, W, C]``."""

  def __init__(self, width: int, *, rngs: nnx.Rngs):
    dims = [3, width, width, width, width]
    self.convs = nnx.List([
        nnx.Conv(i, o, (3, 3), kernel_dilation=d, rngs=rngs)
        for i, o, d in zip(dims[:-1], dims[1:], (1, 2, 4, 1), strict=True)])
    self.head = nnx.Conv(width, NUM_CLASSES, (1, 1), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    for conv in self.convs:
      x = nnx.relu(conv(x))
    return self.head(x)


def objective_fn(name: str, class_weights: jax.Array):
  """``loss(logits, labels) -> scalar`` for one of :data:`OBJECTIVES`."""
  if name == "CE":
    return jaxloss.softmax_cross_entropy
  if name == "CE + median-freq weights":
    # "weighted_mean" divides by the summed weights, like torch's cross_entropy(weight=...).
    return functools.partial(jaxloss.softmax_cross_entropy, class_weights=class_weights,
                             reduction="weighted_mean")
  return jaxloss.softmax_ce_dice_loss


def init(seed: int, width: int):
  """The net split into a static graph and its parameters, the optimiser and its state."""
  graphdef, params = nnx.split(SegNet(width, rngs=nnx.Rngs(seed)))
  tx = optax.chain(optax.add_decayed_weights(L2), optax.adam(LEARNING_RATE))
  return graphdef, params, tx, tx.init(params)


def make_train_step(graphdef, tx, loss_fn):
  """A pure step ``(params, opt_state, images, labels) -> (params, opt_state, loss, breakdown)``.

  ``breakdown`` is ``class_breakdown`` of the unweighted pixel cross-entropy,
  the mean loss over the pixels of each true class, comparable across objectives.
  """

  def compute_loss(params, images, labels):
    logits = nnx.merge(graphdef, params)(images)
    per_pixel = jaxloss.softmax_cross_entropy(logits, labels, reduction="none")
    breakdown = jaxloss.class_breakdown(per_pixel, labels, NUM_CLASSES)
    return loss_fn(logits, labels), breakdown

  def step(params, opt_state, images, labels):
    (loss, breakdown), grads = jax.value_and_grad(compute_loss, has_aux=True)(
        params, images, labels)
    # optax's Adam computes `b1 ** count` (float ** int32), which the strict dtype
    # promotion of the tests rejects: allow standard promotion for the update only.
    with jax.numpy_dtype_promotion("standard"):
      updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, breakdown

  return step


def train(objective, class_weights, seed, batches, train_set, cfg):
  """Trains one net; returns it (graph, params) and the breakdown per step ``[steps, C]``."""
  graphdef, params, tx, opt_state = init(seed, cfg["width"])
  step = jax.jit(make_train_step(graphdef, tx, objective_fn(objective, class_weights)))
  progress = Progress(f"{objective:<{max(map(len, OBJECTIVES))}}", len(batches))
  curve = []
  for i, idx in enumerate(batches):
    params, opt_state, loss, breakdown = step(params, opt_state, *(a[idx] for a in train_set))
    curve.append(breakdown)
    progress(i, loss)
  return graphdef, params, np.asarray(jnp.stack(curve))


def evaluate(graphdef, params, images, labels) -> jax.Array:
  """Confusion matrix ``[C, C]`` of the argmax predictions, summed over batches of 64."""

  @jax.jit
  def confusion(params, x, y):
    predicted = jnp.argmax(nnx.merge(graphdef, params)(x), axis=-1).astype(jnp.int32)
    return jaxloss.confusion_matrix(predicted, y, NUM_CLASSES)

  return sum(confusion(params, images[i:i + 64], labels[i:i + 64])
             for i in range(0, len(images), 64))


def plot(iou: dict, curves: dict):
  """Held-out IoU bars (each labelled with its value), one ``class_breakdown`` panel per objective.

  The legends sit below the axes, where they cover no bar and no curve.
  """
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 4, figsize=(19, 4.2), gridspec_kw=dict(wspace=0.3))
  x = np.arange(NUM_CLASSES + 1)
  for k, (name, values) in enumerate(iou.items()):
    bars = axes[0].bar(x + (k - 1) * 0.27, values, 0.27, label=name)
    # Every bar carries its value, so a bar of height 0 reads "0.00" rather than looking missing.
    axes[0].bar_label(bars, fmt="%.2f", rotation=90, padding=2, fontsize=7)
  axes[0].set_xticks(x, [*CLASSES, "mean"], rotation=20)
  axes[0].set(title="held-out IoU per class", ylabel="IoU", ylim=(0, 1.18),
              yticks=np.linspace(0, 1, 6))
  axes[0].legend(title="objective", fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22),
                 ncol=1, frameon=False)
  axes[2].sharey(axes[1])
  axes[3].sharey(axes[1])
  for ax, (name, curve) in zip(axes[1:], curves.items(), strict=True):
    for c, cls in enumerate(CLASSES):
      ax.plot(np.arange(1, len(curve) + 1), curve[:, c], label=cls, lw=1)
    ax.set(title=f"trained with {name}", xlabel="training step",
           ylabel="mean pixel CE per true class", yscale="log")
  axes[2].legend(title="class_breakdown of the pixel CE, true class:", fontsize=8, ncol=4,
                 loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
  return fig


def main(argv: Sequence[str] | None = None) -> dict:
  args = parse_args(__doc__.splitlines()[0], argv)
  cfg = TINY if args.tiny else FULL
  rng = np.random.default_rng(args.seed)
  train_set = make_dataset(rng, cfg["n_train"], cfg["size"])
  test_set = make_dataset(rng, cfg["n_test"], cfg["size"])
  # One data order for every objective.
  batches = [rng.choice(cfg["n_train"], cfg["batch"], replace=False) for _ in range(cfg["steps"])]
  counts = jaxloss.class_pixel_counts(jnp.asarray(train_set[1]), NUM_CLASSES)
  class_weights = jaxloss.median_frequency_weights(counts)

  print(f"{len(OBJECTIVES)} objectives, {cfg['steps']} Adam steps of {cfg['batch']} images each",
        flush=True)
  iou, curves = {}, {}
  for objective in OBJECTIVES:
    graphdef, params, curves[objective] = train(
        objective, class_weights, args.seed, batches, train_set, cfg)
    cm = evaluate(graphdef, params, *test_set)
    iou[objective] = [*map(float, jaxloss.iou_per_class(cm)), float(jaxloss.mean_iou(cm))]

  share = counts.class_pixels / jnp.sum(counts.class_pixels)
  print()
  print(format_table(["", *CLASSES], [["pixel share", *map(float, share)],
                                      ["median-freq weight", *map(float, class_weights)]]))
  print()
  print(format_table(["objective", *CLASSES, "mean IoU"],
                     [[name, *values] for name, values in iou.items()]))
  figure = save_figure(plot(iou, curves), args.out, "segmentation_flax.png")
  return {"iou": iou, "class_weights": [float(w) for w in class_weights],
          "figure": str(figure)}


def portable_train_step():
  """The weighted-CE training step as a pure function, and small example arguments."""
  images, labels = make_dataset(np.random.default_rng(0), 4, 16)
  class_weights = jaxloss.median_frequency_weights(
      jaxloss.class_pixel_counts(jnp.asarray(labels), NUM_CLASSES))
  graphdef, params, tx, opt_state = init(0, 4)
  step = make_train_step(graphdef, tx, objective_fn(OBJECTIVES[1], class_weights))
  fn = lambda *a: step(*a)[:3]  # (params, opt_state, loss)
  return fn, (params, opt_state, jnp.asarray(images), jnp.asarray(labels))


if __name__ == "__main__":
  main()
