"""Semi-supervised workloads: FixMatch pseudo-label CE, UDA/MixMatch consistency, entropy.

Classification shapes: student (and teacher) logits ``f32[4096, 1000]``, an
ImageNet-size unlabeled batch (``--quick``: ``[1024, 100]``), value and
gradient with respect to the student logits. The naive JAX row is the
composition of the papers' reference code; the optax row builds the same loss
from optax's blocks (its integer-label CE, ``kl_divergence_with_log_targets``,
``softmax_cross_entropy`` against ``softmax(x)`` for the entropy), and the
torch rows from ``torch.nn.functional``. The teacher logits get a random class
lifted by ``U(0, 16)`` so that about a third of the rows (half at
``--quick`` size) pass FixMatch's 0.95 confidence threshold.
"""

from __future__ import annotations

from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss
from bench.harness import Workload, register

FULL = (4096, 1000)
QUICK = (1024, 100)
THRESHOLD = 0.95  # FixMatch's tau
UDA_T = 0.4  # UDA's uda_softmax_temp
MIXMATCH_T = 0.5  # MixMatch's sharpening temperature


def _student(quick: bool, rng: np.random.Generator) -> np.ndarray:
  return 2 * rng.standard_normal(QUICK if quick else FULL, dtype=np.float32)


def _teacher(quick: bool, rng: np.random.Generator) -> np.ndarray:
  t = rng.standard_normal(QUICK if quick else FULL, dtype=np.float32)
  rows = np.arange(t.shape[0])
  t[rows, rng.integers(0, t.shape[1], size=t.shape[0])] += rng.uniform(0, 16, size=t.shape[0])
  return t


def _two_logits(quick: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
  return _student(quick, rng), _teacher(quick, rng)


def _one_logits(quick: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
  return (_student(quick, rng),)


# --------------------------------------------------------------------------- pseudo-label CE


def _confident(t: jax.Array) -> jax.Array:
  return (jnp.max(jax.nn.softmax(t, axis=-1), axis=-1) >= THRESHOLD).astype(t.dtype)


def _naive_pseudo_label(x: jax.Array, t: jax.Array) -> jax.Array:
  """FixMatch: ``mean(CE(strong, argmax(weak)) * (max softmax(weak) >= tau))``."""
  t = jax.lax.stop_gradient(t)
  logp = jax.nn.log_softmax(x, axis=-1)
  nll = -jnp.take_along_axis(logp, jnp.argmax(t, axis=-1)[:, None], axis=-1)[:, 0]
  return jnp.mean(nll * _confident(t))


def _optax_pseudo_label(x: jax.Array, t: jax.Array) -> jax.Array:
  t = jax.lax.stop_gradient(t)
  nll = optax.softmax_cross_entropy_with_integer_labels(x, jnp.argmax(t, axis=-1))
  return jnp.mean(nll * _confident(t))


def _torch_pseudo_label(torch: ModuleType):
  def loss(x, t):
    q = torch.softmax(t, dim=-1)
    mask = (q.amax(dim=-1) >= THRESHOLD).to(x.dtype)
    nll = torch.nn.functional.cross_entropy(x, t.argmax(dim=-1), reduction="none")
    return (nll * mask).mean()
  return loss


register(Workload(
    name="pseudo_label",
    family="semi_supervised",
    description=f"FixMatch pseudo-label CE, threshold {THRESHOLD}, hard targets, 1000 classes, "
                "reduction='mean'",
    make_inputs=_two_logits,
    impls={
        "jaxloss": lambda x, t: jaxloss.pseudo_label_cross_entropy(x, t, threshold=THRESHOLD)[0],
        "naive_jax": _naive_pseudo_label,
        "optax": _optax_pseudo_label,
    },
    torch_factory=_torch_pseudo_label,
))


# --------------------------------------------------------------------------- consistency


def _naive_consistency_kl(a: jax.Array, b: jax.Array) -> jax.Array:
  """UDA: ``KL(softmax(b / T) || softmax(a))`` from log-softmaxes, mean over rows."""
  log_q = jax.nn.log_softmax(jax.lax.stop_gradient(b) / UDA_T, axis=-1)
  log_p = jax.nn.log_softmax(a, axis=-1)
  return jnp.mean(jnp.sum(jnp.exp(log_q) * (log_q - log_p), axis=-1))


def _optax_consistency_kl(a: jax.Array, b: jax.Array) -> jax.Array:
  log_q = jax.nn.log_softmax(jax.lax.stop_gradient(b) / UDA_T, axis=-1)
  return jnp.mean(optax.losses.kl_divergence_with_log_targets(jax.nn.log_softmax(a, axis=-1),
                                                              log_q))


def _torch_consistency_kl(torch: ModuleType):
  f = torch.nn.functional

  def loss(a, b):
    log_q = f.log_softmax(b.detach() / UDA_T, dim=-1)
    return f.kl_div(f.log_softmax(a, dim=-1), log_q, log_target=True, reduction="batchmean")
  return loss


register(Workload(
    name="consistency_kl",
    family="semi_supervised",
    description=f"UDA consistency KL(softmax(b/T) || softmax(a)), T={UDA_T}, 1000 classes, "
                "reduction='mean'",
    make_inputs=_two_logits,
    impls={
        "jaxloss": lambda a, b: jaxloss.consistency_loss(a, b, kind="kl", temperature=UDA_T),
        "naive_jax": _naive_consistency_kl,
        "optax": _optax_consistency_kl,
    },
    torch_factory=_torch_consistency_kl,
))


def _naive_consistency_mse(a: jax.Array, b: jax.Array) -> jax.Array:
  """MixMatch's L_U: ``mean((softmax(a) - sharpen(softmax(b)))^2)`` over rows and classes."""
  q = jax.nn.softmax(jax.lax.stop_gradient(b) / MIXMATCH_T, axis=-1)
  return jnp.mean(jnp.square(jax.nn.softmax(a, axis=-1) - q))


def _torch_consistency_mse(torch: ModuleType):
  def loss(a, b):
    q = torch.softmax(b.detach() / MIXMATCH_T, dim=-1)
    return torch.nn.functional.mse_loss(torch.softmax(a, dim=-1), q)
  return loss


register(Workload(
    name="consistency_mse",
    family="semi_supervised",
    description=f"MixMatch consistency MSE of softmaxes, T={MIXMATCH_T}, 1000 classes, "
                "reduction='mean' (optax has none)",
    make_inputs=_two_logits,
    impls={
        "jaxloss": lambda a, b: jaxloss.consistency_loss(
            a, b, kind="mse", temperature=MIXMATCH_T),
        "naive_jax": _naive_consistency_mse,
    },
    torch_factory=_torch_consistency_mse,
))


# --------------------------------------------------------------------------- entropy


def _naive_entropy(x: jax.Array) -> jax.Array:
  logp = jax.nn.log_softmax(x, axis=-1)
  return jnp.mean(-jnp.sum(jnp.exp(logp) * logp, axis=-1))


def _torch_entropy(torch: ModuleType):
  return lambda x: torch.distributions.Categorical(logits=x).entropy().mean()


register(Workload(
    name="entropy_min",
    family="semi_supervised",
    description="entropy minimisation H(softmax(x)), 1000 classes, reduction='mean'",
    make_inputs=_one_logits,
    impls={
        "jaxloss": lambda x: jaxloss.entropy_minimization_loss(x),
        "naive_jax": _naive_entropy,
        # optax's CE against softmax(x) itself: the entropy, gradient through both arguments.
        "optax": lambda x: jnp.mean(optax.softmax_cross_entropy(x, jax.nn.softmax(x, axis=-1))),
    },
    torch_factory=_torch_entropy,
))
