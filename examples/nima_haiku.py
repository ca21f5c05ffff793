"""NIMA with Haiku: predict a 1..10 score histogram and train it with the Earth Mover's Distance.

NIMA (Talebi & Milanfar 2018) rates an image by predicting the whole histogram
of its ratings, not one number, and trains with the EMD (``r = 2``) between
the predicted and the voted histograms. This example does the same on
synthetic, seeded data, so it runs in seconds on a CPU:

* every example has 8 features; its latent mean score and its latent spread
  depend nonlinearly on them, and its true histogram is
  ``jaxloss.scores_to_distribution(mean, method="gaussian", std=spread)``;
* the training targets are simulated votes (5 to 60 voters drawn from the true
  histogram) turned into histograms by ``jaxloss.counts_to_distribution``; 5 %
  of the examples got no vote, and its has-votes mask goes to the loss as ``where=``;
* a Haiku MLP outputs 10 logits, trained with
  ``earth_mover_distance(logits, votes, activation="softmax", r=2, where=...)``;
* on held-out data, ``jaxloss.score_mean_std`` reads the mean score and its
  std back from the predicted histograms, compared with the true ones; the
  noisy vote histograms and the training-set average histogram are shown as
  baselines.

Run ``python examples/nima_haiku.py`` (``--tiny`` for a smoke run, ``--out DIR``,
``--seed N``). It prints its progress and a table, and writes ``nima_haiku.png``. Needs
``dm-haiku``, ``optax`` and ``matplotlib``.
"""

from __future__ import annotations

import haiku as hk
import jax
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _common import Progress, format_table, parse_args, save_figure  # noqa: E402

import jaxloss  # noqa: E402

NUM_FEATURES = 8
NUM_BINS = 10  # scores 1..10


# Every eager JAX op compiles once; jitting the few host-side helpers keeps startup short.
@jax.jit
def true_histograms(mean: jax.Array, spread: jax.Array) -> jax.Array:
  return jaxloss.scores_to_distribution(mean, method="gaussian", std=spread)


def make_data(rng: np.random.Generator, n: int, proj: np.ndarray, unrated: float):
  """Features, true histograms and simulated vote histograms (with a has-votes mask)."""
  x = rng.standard_normal((n, NUM_FEATURES)).astype(np.float32)
  a, b = x @ proj[0], x @ proj[1]
  mean = 5.5 + 2.5 * np.tanh(0.8 * a + 0.5 * x[:, 0] * x[:, 1])
  spread = 0.6 + 1.4 / (1.0 + np.exp(-(2.0 * np.sin(b) + x[:, 2])))
  true = np.asarray(true_histograms(mean.astype(np.float32), spread.astype(np.float32)))
  voters = np.where(rng.random(n) < unrated, 0, rng.integers(5, 61, n))
  pvals = true.astype(np.float64)
  counts = rng.multinomial(voters, pvals / pvals.sum(-1, keepdims=True))
  votes, has_votes = jax.jit(jaxloss.counts_to_distribution)(counts.astype(np.float32))
  return x, true, np.asarray(votes), np.asarray(has_votes)


def forward(x: jax.Array) -> jax.Array:
  """Logits over the 10 score bins."""
  return hk.nets.MLP([64, 64, NUM_BINS], activation=jax.nn.gelu)(x)


model = hk.without_apply_rng(hk.transform(forward))
init = jax.jit(model.init)
optimizer = optax.adam(2e-3)


@jax.jit
def predict(params, x: jax.Array) -> jax.Array:
  """Predicted histograms (probabilities)."""
  return jax.nn.softmax(model.apply(params, x), axis=-1)


def loss_fn(params, x, votes, has_votes):
  logits = model.apply(params, x)
  return jaxloss.earth_mover_distance(logits, votes, r=2.0, activation="softmax",
                                      where=has_votes)


def train_step(params, opt_state, x, votes, has_votes):
  """One Adam step on the EMD; pure, so it jits and exports."""
  loss, grads = jax.value_and_grad(loss_fn)(params, x, votes, has_votes)
  # optax's Adam computes `b1 ** count` (float ** int32), which strict dtype promotion
  # (as in this repository's tests) rejects: run the optimizer under standard promotion.
  with jax.numpy_dtype_promotion("standard"):
    updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


def portable_train_step():
  """The training step and small example arguments, for ``jax.export``."""
  rng = np.random.default_rng(0)
  x, _, votes, has_votes = make_data(rng, 16, rng.standard_normal((2, NUM_FEATURES)), 0.1)
  params = init(jax.random.key(0), x)
  return train_step, (params, optimizer.init(params), x, votes, has_votes)


METRICS = {  # summary key: table row
    "emd": "EMD (r=2) to the true histogram",
    "mean_pearson": "mean score: Pearson r",
    "mean_mae": "mean score: MAE",
    "std_pearson": "score std: Pearson r",
    "std_mae": "score std: MAE",
}


def pearson(a: np.ndarray, b: np.ndarray) -> float | str:
  """Pearson's r; "-" for a constant prediction, which has none."""
  return "-" if np.ptp(a) == 0 else float(np.corrcoef(a, b)[0, 1])


@jax.jit
def readout(hist: jax.Array, true: jax.Array):
  """EMD to the true histograms, then (mean, std) of both."""
  emd = jaxloss.earth_mover_distance(hist, true, r=2.0)
  return emd, *jaxloss.score_mean_std(hist), *jaxloss.score_mean_std(true)


def evaluate(hist, true) -> dict:
  """The test metrics of histograms ``hist`` against the true histograms ``true``."""
  emd, mean, std, t_mean, t_std = (np.asarray(v) for v in readout(hist, true))
  return {"emd": float(emd),
          "mean_pearson": pearson(mean, t_mean), "mean_mae": float(np.mean(np.abs(mean - t_mean))),
          "std_pearson": pearson(std, t_std), "std_mae": float(np.mean(np.abs(std - t_std))),
          "scatter": ((t_mean, mean), (t_std, std))}


def main(argv=None) -> dict:
  args = parse_args(__doc__.splitlines()[0], argv)
  n_train, n_test, steps, batch = (128, 64, 10, 32) if args.tiny else (4000, 1000, 2000, 128)
  rng = np.random.default_rng(args.seed)
  proj = (rng.standard_normal((2, NUM_FEATURES)) / np.sqrt(NUM_FEATURES)).astype(np.float32)
  x_tr, _, votes_tr, rated_tr = make_data(rng, n_train, proj, unrated=0.05)
  x_te, true_te, votes_te, _ = make_data(rng, n_test, proj, unrated=0.0)

  print(f"NIMA on synthetic ratings: {n_train} training examples ({int(np.sum(~rated_tr))} "
        f"without votes, masked), {n_test} test examples, {steps} Adam steps of {batch}",
        flush=True)
  params = init(jax.random.key(args.seed), x_tr[:1])
  opt_state = optimizer.init(params)
  progress = Progress("EMD", steps)
  step = jax.jit(train_step)
  test_emd = jax.jit(lambda p: jaxloss.earth_mover_distance(predict(p, x_te), true_te, r=2.0))
  losses, curve = [], []
  for i in range(steps):
    idx = rng.integers(0, n_train, batch)
    params, opt_state, loss = step(params, opt_state, x_tr[idx], votes_tr[idx], rated_tr[idx])
    losses.append(float(loss))
    progress(i, loss)
    if i % max(1, steps // 30) == 0 or i == steps - 1:
      curve.append((i, float(test_emd(params))))

  # Read the histograms back as (mean score, std) and compare them with the truth.
  pred = predict(params, x_te)
  average = np.broadcast_to(np.mean(votes_tr[rated_tr], axis=0), pred.shape)
  results = {"model": evaluate(pred, true_te), "raw votes": evaluate(votes_te, true_te),
             "train-average histogram": evaluate(average, true_te)}
  rows = [[label, *(r[key] for r in results.values())] for key, label in METRICS.items()]
  print()
  print(format_table(["test metric", *results], rows))

  fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
  kernel = np.ones(min(50, steps)) / min(50, steps)
  axes[0].plot(np.convolve(losses, kernel, mode="valid"), label="train EMD vs votes (smoothed)")
  axes[0].plot(*zip(*curve, strict=True), "o-", ms=3, label="test EMD vs true histograms")
  axes[0].set(xlabel="step", ylabel="EMD (r = 2)", title="training", yscale="log")
  axes[0].legend()
  for ax, (truth, guess), what in zip(axes[1:], results["model"]["scatter"],
                                     ("mean score", "score std"), strict=True):
    ax.scatter(truth, guess, s=6, alpha=0.5)
    lims = [min(truth.min(), guess.min()), max(truth.max(), guess.max())]
    ax.plot(lims, lims, "k--", lw=1)
    ax.set(xlabel=f"true {what}", ylabel=f"predicted {what}",
           title=f"{what}: Pearson r = {pearson(guess, truth):.3f}")
  summary = {key: results["model"][key] for key in METRICS}
  summary.update(votes_emd=results["raw votes"]["emd"],
                 average_emd=results["train-average histogram"]["emd"],
                 final_train_loss=losses[-1],
                 figure=str(save_figure(fig, args.out, "nima_haiku.png")))
  return summary


if __name__ == "__main__":
  main()
