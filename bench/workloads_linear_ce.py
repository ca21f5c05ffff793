"""Fused linear cross-entropy workloads: the language-model head, value and gradient.

``linear_ce`` (f32) and ``linear_ce_bf16``: N = 4096 tokens, H = 512, V = 32768
(``--quick``: N = 512, H = 128, V = 4096), int32 labels, ``reduction="mean"``.

The harness differentiates input 0 only, so input 0 packs both differentiated
arrays: ``p = [xᵀ | W]`` of shape ``[H, N + V]``; every contender unpacks
``x = p[:, :N].T`` and ``W = p[:, N:]`` the same way and gets the gradient with
respect to both. (Columns of ``p`` are a free slice of ``W``; the transpose of
``x`` is one copy of ``[N, H]``, the same for every contender.)

Peers: ``naive_jax`` (``x @ W``, then ``log_softmax``), ``optax`` on the
materialised logits, ``jaxloss_unfused`` (``softmax_cross_entropy`` on them,
shown but not counted as a peer) and, when importable (the ``bench-peers``
extra), ``tokamax`` (``linear_softmax_cross_entropy_loss``, xla implementation)
and ``jax_cce`` (``linear_cross_entropy``); ``torch_eager`` when torch is
importable. The materialised logits are f32 (``preferred_element_type``) in the
bf16 workload too, the precision the fused loss keeps.

``python -m bench.workloads_linear_ce`` prints the compile-only XLA temp of each
implementation at the LLM-scale shape N = 16384, H = 2048, V = 131072 in bf16
(nothing runs; a few seconds each).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss
from bench.harness import Workload, register
from jaxloss._linear_ce import linear_softmax_cross_entropy

FULL = (4096, 512, 32768)  # N, H, V
QUICK = (512, 128, 4096)
LLM_SCALE = (16384, 2048, 131072)


def _optional(module: str) -> ModuleType | None:
  """The module when it imports, else None (a broken peer must not stop the bench)."""
  if importlib.util.find_spec(module) is None:
    return None
  try:
    return importlib.import_module(module)
  except Exception:  # broad on purpose: an optional peer
    return None


def _logits(x: jax.Array, w: jax.Array) -> jax.Array:
  return jnp.dot(x, w, preferred_element_type=jnp.float32)


def naive_jax(x: jax.Array, w: jax.Array, y: jax.Array) -> jax.Array:
  logp = jax.nn.log_softmax(_logits(x, w), axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))


def optax_ce(x: jax.Array, w: jax.Array, y: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(_logits(x, w), y).mean()


def jaxloss_unfused(x: jax.Array, w: jax.Array, y: jax.Array) -> jax.Array:
  return jaxloss.softmax_cross_entropy(_logits(x, w), y)


def jaxloss_fused(x: jax.Array, w: jax.Array, y: jax.Array) -> jax.Array:
  return linear_softmax_cross_entropy(x, w, y)


def implementations() -> dict[str, Callable[[jax.Array, jax.Array, jax.Array], jax.Array]]:
  """Every implementation ``(x [N, H], W [H, V], y [N]) -> mean loss`` available here."""
  impls = {"jaxloss": jaxloss_fused, "naive_jax": naive_jax, "optax": optax_ce,
           "jaxloss_unfused": jaxloss_unfused}
  tokamax = _optional("tokamax")
  if tokamax is not None:
    # tokamax reads absl flags, which parse sys.argv (the bench's own flags) unless marked
    # as parsed already.
    flags = importlib.import_module("absl.flags").FLAGS
    if not flags.is_parsed():
      flags.mark_as_parsed()
    impls["tokamax"] = lambda x, w, y: tokamax.linear_softmax_cross_entropy_loss(
        x, y, w, reduction="mean", implementation="xla").astype(jnp.float32)
  jax_cce = _optional("jax_cce")
  if jax_cce is not None:  # its weight is [V, H]
    impls["jax_cce"] = lambda x, w, y: jax_cce.linear_cross_entropy(x, w.T, y).astype(
        jnp.float32)
  return impls


def _packed(dtype: Any):
  def make(quick: bool, rng: np.random.Generator) -> tuple[Any, ...]:
    n, h, v = QUICK if quick else FULL
    x = rng.standard_normal((n, h), dtype=np.float32)
    w = rng.standard_normal((h, v), dtype=np.float32) / np.sqrt(h)
    p = np.concatenate([x.T, w], axis=1)
    return jnp.asarray(p, dtype), rng.integers(0, v, size=n).astype(np.int32)
  return make


def _unpacked(fn: Callable[..., jax.Array]) -> Callable[[jax.Array, jax.Array], jax.Array]:
  def packed(p: jax.Array, y: jax.Array) -> jax.Array:
    n = y.shape[0]
    return fn(p[:, :n].T, p[:, n:], y)
  return packed


def _torch_ce(torch: ModuleType):
  def loss(p, y):
    n = y.shape[0]
    return torch.nn.functional.cross_entropy((p[:, :n].T @ p[:, n:]).float(), y.long())
  return loss


for _dtype, _suffix in ((np.float32, ""), (jnp.bfloat16, "_bf16")):
  register(Workload(
      name=f"linear_ce{_suffix}",
      family="linear_ce",
      description=(f"fused linear softmax CE, N=4096 H=512 V=32768 (quick 512/128/4096), "
                   f"{np.dtype(_dtype).name}, value and gradient w.r.t. x and W (packed)"),
      make_inputs=_packed(_dtype),
      impls={name: _unpacked(fn) for name, fn in implementations().items()},
      torch_factory=_torch_ce,
      # bf16: the peers round the f32 logits' gradient to bf16 at different points.
      rtol=3e-2 if _suffix else 1e-4,
  ))


def compile_only_temps(shape: tuple[int, int, int] = LLM_SCALE,
                       dtype: Any = jnp.bfloat16) -> dict[str, float]:
  """XLA temp (GiB) of each implementation's jitted value and gradient w.r.t. x and W."""
  n, h, v = shape
  specs = (jax.ShapeDtypeStruct((n, h), dtype), jax.ShapeDtypeStruct((h, v), dtype),
           jax.ShapeDtypeStruct((n,), jnp.int32))
  out = {}
  for name, fn in implementations().items():
    if name == "jaxloss_unfused":
      continue
    compiled = jax.jit(jax.value_and_grad(fn, (0, 1))).lower(*specs).compile()
    out[name] = compiled.memory_analysis().temp_size_in_bytes / 2**30
  return out


if __name__ == "__main__":
  n, h, v = LLM_SCALE
  print(f"compile-only XLA temp, value and grad w.r.t. x and W, N={n} H={h} V={v} bf16:")
  for impl, gib in compile_only_temps().items():
    print(f"  {impl:12s} {gib:7.2f} GiB")
