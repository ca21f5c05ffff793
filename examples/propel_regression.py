"""PROPEL: a mixture-of-Gaussians output for a regression problem with two answers.

For every ``x`` in ``[-1, 1]`` the target is ``y = s * f(x) + noise`` with a random
sign ``s``: two equally likely answers. A network trained with the mean squared
error can only learn their average, ``y ~ 0``, where no data lies. The same MLP
trained with ``jaxloss.propel_loss`` outputs a mixture of ``I`` Gaussians with
learned weights (``outputs`` ``[B, I, 2D]`` with ``D = 1``: one mean and one raw
standard deviation per component, plus ``mixture_logits`` ``[B, I]``), and
finds both branches.

On held-out data the example compares:

* the MSE of each model's point estimate (the mixture's is its mean, from
  ``jaxloss.mixture_mean_and_variance``): both are stuck at the average;
* the MSE to the nearest mixture component that carries weight: the modes;
* the negative log-likelihood of the test points under the mixture, against a
  single Gaussian around the MSE fit with the training residuals' variance;
* for reference, the same numbers for the density that generated the data.

PROPEL is not a likelihood, so the mixture's NLL stays a little above the
reference. Like any mixture model it has poor local optima (one wide component
straddling both branches); the learning rate below avoids them for seeds 0-9.

The MLP is plain JAX (a list of ``(w, b)``) with ``optax``, so this example
needs nothing beyond ``jax``, ``optax`` and ``matplotlib``.

Run ``python examples/propel_regression.py`` (``--tiny`` for a smoke run,
``--out DIR``, ``--seed N``). It prints a table and writes ``propel_regression.png``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _common import format_table, parse_args, save_figure  # noqa: E402

import jaxloss  # noqa: E402

COMPONENTS = 6  # I
HIDDEN = (64, 64)
SIGMA = 0.05  # PROPEL's ground-truth std: about the noise in the data
NOISE = 0.05
# At 3e-3 some seeds settle with one wide component straddling both branches; at 1e-3
# seeds 0-9 all find them.
optimizer = optax.adam(1e-3)


def branch(x: np.ndarray) -> np.ndarray:
  """The upper branch ``f(x)``; the data lie around ``f(x)`` and ``-f(x)``."""
  return 0.5 + 0.3 * np.sin(math.pi * x)


def make_data(rng: np.random.Generator, n: int):
  """``x`` ``[n, 1]`` and ``y`` ``[n, 1]``: one of the two branches ``±f(x)`` plus noise."""
  x = rng.uniform(-1.0, 1.0, (n, 1))
  sign = rng.choice([-1.0, 1.0], (n, 1))
  y = sign * branch(x) + NOISE * rng.standard_normal((n, 1))
  return x.astype(np.float32), y.astype(np.float32)


@functools.partial(jax.jit, static_argnums=1)
def init_mlp(key: jax.Array, sizes: tuple[int, ...]) -> list[tuple[jax.Array, jax.Array]]:
  keys = jax.random.split(key, len(sizes) - 1)
  return [(jax.random.normal(k, (m, n), jnp.float32) * math.sqrt(2.0 / m),
           jnp.zeros((n,), jnp.float32))
          for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)]


@jax.jit
def mlp(params, x: jax.Array) -> jax.Array:
  for w, b in params[:-1]:
    x = jax.nn.gelu(x @ w + b[None, :])  # explicit broadcast: the tests forbid rank promotion
  w, b = params[-1]
  return x @ w + b[None, :]


@jax.jit
def init_mixture(key: jax.Array):
  """The mixture MLP; the output biases spread the initial means over [-1, 1]."""
  params = init_mlp(key, (1, *HIDDEN, 3 * COMPONENTS))
  w, _ = params[-1]
  bias = jnp.concatenate([jnp.linspace(-1.0, 1.0, COMPONENTS, dtype=jnp.float32),  # means
                          jnp.full((COMPONENTS,), 0.2, jnp.float32),  # raw stds
                          jnp.zeros((COMPONENTS,), jnp.float32)])  # mixture logits
  return [*params[:-1], (0.1 * w, bias)]


def mixture(params, x: jax.Array):
  """``outputs`` ``[B, I, 2]`` (mean, raw std per component) and ``mixture_logits`` ``[B, I]``."""
  means, stds, logits = jnp.split(mlp(params, x), 3, axis=-1)
  return jnp.stack([means, stds], axis=-1), logits


def propel_objective(params, x, y):
  outputs, logits = mixture(params, x)
  return jaxloss.propel_loss(outputs, y, sigma=SIGMA, mixture_logits=logits)


def mse_objective(params, x, y):
  return jnp.mean(jnp.square(mlp(params, x) - y))


def make_train_step(objective):
  def train_step(params, opt_state, x, y):
    """One Adam step; pure, so it jits and exports."""
    loss, grads = jax.value_and_grad(objective)(params, x, y)
    # optax's Adam computes `b1 ** count` (float ** int32), which strict dtype promotion
    # (as in this repository's tests) rejects: run the optimizer under standard promotion.
    with jax.numpy_dtype_promotion("standard"):
      updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
  return train_step


def portable_train_step():
  """The PROPEL training step and small example arguments, for ``jax.export``."""
  x, y = make_data(np.random.default_rng(0), 16)
  params = init_mixture(jax.random.key(0))
  return make_train_step(propel_objective), (params, optimizer.init(params), x, y)


def train(objective, params, x, y, steps: int, batch: int, rng: np.random.Generator):
  step = jax.jit(make_train_step(objective))
  opt_state = jax.jit(optimizer.init)(params)
  for _ in range(steps):
    idx = rng.integers(0, len(x), batch)
    params, opt_state, loss = step(params, opt_state, x[idx], y[idx])
  return params, float(loss)


@jax.jit
def mixture_summary(params, x: jax.Array):
  """Component means, stds and weights ``[B, I]``, and the mixture's mean ``[B, 1]``."""
  outputs, logits = mixture(params, x)
  means, stds = jaxloss.split_mixture_outputs(outputs)  # [B, I, 1] each
  mean, _ = jaxloss.mixture_mean_and_variance(means, stds, logits)  # law of total variance
  return means[..., 0], stds[..., 0], jax.nn.softmax(logits, axis=-1), mean


@jax.jit
def mixture_log_density(params, x: jax.Array, y: jax.Array) -> jax.Array:
  """``log p(y | x)`` under the learned mixture, ``[B]`` (``y`` ``[B, 1]``)."""
  means, stds, weights, _ = mixture_summary(params, x)
  log_n = -0.5 * jnp.square((y - means) / stds) - jnp.log(stds) - 0.5 * math.log(2 * math.pi)
  return jax.nn.logsumexp(jnp.log(weights) + log_n, axis=-1)


def gaussian_nll(residual: np.ndarray, var: np.ndarray | float) -> np.ndarray:
  return 0.5 * np.square(residual) / var + 0.5 * np.log(2 * math.pi * var)


def main(argv=None) -> dict:
  args = parse_args(__doc__.splitlines()[0], argv)
  n_train, n_test, steps, batch = (128, 128, 10, 32) if args.tiny else (4000, 2000, 3000, 256)
  rng = np.random.default_rng(args.seed)
  x_tr, y_tr = make_data(rng, n_train)
  x_te, y_te = make_data(rng, n_test)
  key_mix, key_mse = jax.random.split(jax.random.key(args.seed))
  mix_params, mix_loss = train(propel_objective, init_mixture(key_mix), x_tr, y_tr, steps,
                               batch, rng)
  mse_params, mse_loss = train(mse_objective, init_mlp(key_mse, (1, *HIDDEN, 1)), x_tr, y_tr,
                               steps, batch, rng)

  # MSE model: a point estimate, and a single Gaussian with the training residuals' variance.
  mse_pred = np.asarray(mlp(mse_params, x_te))
  res_var = float(np.mean(np.square(np.asarray(mlp(mse_params, x_tr)) - y_tr)))
  # Mixture: its mean, the nearest component that carries weight, its likelihood.
  means, stds, weights, mix_mean = (np.asarray(v) for v in mixture_summary(mix_params, x_te))
  nearest = np.min(np.where(weights > 0.05, np.square(means - y_te), np.inf), axis=-1)
  # The density that generated the data: a point estimate can do no better than 0.
  f = branch(x_te)
  true_nll = -np.logaddexp(-gaussian_nll(y_te - f, NOISE**2), -gaussian_nll(y_te + f, NOISE**2))
  mse = lambda pred: float(np.mean(np.square(pred - y_te)))
  rows = [
      ["MLP + MSE (one Gaussian, residual std)", mse(mse_pred), mse(mse_pred),
       float(np.mean(gaussian_nll(mse_pred - y_te, res_var)))],
      [f"MLP + PROPEL ({COMPONENTS} components)", mse(mix_mean), float(np.mean(nearest)),
       -float(np.mean(mixture_log_density(mix_params, x_te, y_te)))],
      ["true two-branch density (reference)", mse(np.zeros_like(y_te)),
       float(np.mean(np.minimum(np.square(y_te - f), np.square(y_te + f)))),
       float(np.mean(true_nll + math.log(2.0)))],
  ]
  print(f"Two-branch regression: {n_train} training, {n_test} test points, noise std {NOISE}, "
        f"{steps} Adam steps of {batch}\n")
  print(format_table(["model", "point-estimate MSE", "nearest-component MSE", "test NLL"],
                     rows))

  # The figure: data and fits (left), the mixture's density p(y | x) (right).
  grid = np.linspace(-1.0, 1.0, 200, dtype=np.float32)[:, None]
  g_means, g_stds, g_w, g_mean = (np.asarray(v) for v in mixture_summary(mix_params, grid))
  fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
  ax.scatter(x_te[:, 0], y_te[:, 0], s=3, c="0.6", label="test data")
  ax.plot(grid[:, 0], np.asarray(mlp(mse_params, grid))[:, 0], "k", lw=2, label="MSE fit")
  ax.plot(grid[:, 0], g_mean[:, 0], "k:", lw=1.5, label="mixture mean")
  for i in range(COMPONENTS):  # each component where its weight exceeds 10 %
    on = g_w[:, i] > 0.1
    if on.any():
      ax.scatter(grid[on, 0], g_means[on, i], s=4, color=f"C{i}", alpha=g_w[on, i])
      ax.fill_between(grid[:, 0], g_means[:, i] - g_stds[:, i], g_means[:, i] + g_stds[:, i],
                      where=on, color=f"C{i}", alpha=0.2, lw=0)
  ax.set(xlabel="x", ylabel="y", title="data, fits, mixture means ± std (alpha = weight)")
  ax.legend(loc="lower left")
  xx, yy = np.meshgrid(grid[:, 0], np.linspace(-1.2, 1.2, 160, dtype=np.float32))
  dens = np.exp(np.asarray(mixture_log_density(
      mix_params, xx.reshape(-1, 1), yy.reshape(-1, 1)))).reshape(xx.shape)
  ax_d.imshow(dens, origin="lower", extent=(-1, 1, -1.2, 1.2), aspect="auto", cmap="magma",
              vmax=float(np.percentile(dens, 99.5)))
  ax_d.set(xlabel="x", title=f"mixture density p(y | x); test NLL {rows[1][3]:.2f} "
           f"(one Gaussian {rows[0][3]:.2f})")
  figure = save_figure(fig, args.out, "propel_regression.png")
  return {"mse_model_mse": rows[0][1], "mixture_mean_mse": rows[1][1],
          "nearest_component_mse": rows[1][2], "mse_model_nll": rows[0][3],
          "mixture_nll": rows[1][3], "true_nll": rows[2][3], "propel_final_loss": mix_loss,
          "mse_final_loss": mse_loss, "figure": str(figure)}


if __name__ == "__main__":
  main()
