"""Benchmark harness: the workload registry, interleaved timing and XLA statistics.

A ``workloads_<family>.py`` module in this package builds :class:`Workload`
objects and hands them to :func:`register` at import time; :func:`all_workloads`
imports every such module, so adding a family needs no edit here.
:func:`run_workload` builds a workload's contenders (every implementation's
jitted value and gradient, the streaming roofline, ``np.copyto``, torch),
checks that they agree, reads XLA's statistics and times them interleaved.
Reports, JSON and the plot live in :mod:`bench.report`.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Implementation names with a special role; every other entry of ``impls`` is a peer,
# except variants of jaxloss itself, named ``jaxloss_*`` (e.g. ``jaxloss_autodiff``).
JAXLOSS = "jaxloss"
ROOFLINE = "roofline"
COPYTO = "np.copyto"
TORCH_EAGER = "torch_eager"
TORCH_COMPILE = "torch_compile"


@dataclasses.dataclass(frozen=True)
class Workload:
  """One benchmark case: a loss at one size and the implementations compared.

  Attributes:
    name: unique short name, matched by ``--only``.
    family: loss family; by convention the ``workloads_<family>.py`` it lives in.
    make_inputs: ``(quick, rng) -> tuple of arrays`` (NumPy or JAX), built with
      the seeded ``np.random.Generator`` given. Input 0 is the differentiated one.
    impls: implementation name -> ``fn(*inputs) -> scalar loss``. Must hold
      ``"jaxloss"``; the peers are usually ``"naive_jax"`` (what a user would
      write) and ``"optax"`` (left out where optax has no equivalent).
    description: one line shown above the workload's table.
    torch_factory: optional ``torch -> fn(*tensors) -> scalar tensor``, called
      with the imported ``torch`` module only when torch is importable.
    roofline: optional ``fn(*inputs) -> array`` replacing
      :func:`streaming_roofline`; jitted as is (no gradient).
    min_bytes: optional ``inputs -> int`` replacing the default minimal bytes:
      every input read once plus one gradient-sized (input-0-sized) write.
    rtol: relative tolerance of the agreement check: ``|v - v_ref| <= atol +
      rtol |v_ref|`` for the value, ``max |g - g_ref| <= rtol max |g_ref|`` for
      the gradient.
    atol: absolute tolerance of the value check.
    grad_rtol: relative tolerance of the gradient check, where it must differ from
      ``rtol`` (float32 cancellation in a peer's formula, or a peer's different
      subgradient at exact ties); ``None`` uses ``rtol``.
    grad: ``False`` for a value-only workload (a function with no gradient, e.g.
      a distance transform): every implementation maps the inputs to an output
      array, ``jax.jit(fn)`` is timed, and the outputs must agree element-wise
      (``max |out - out_ref| <= atol + rtol max |out_ref|``) and in sum.
    host_impls: implementation name -> ``fn(*numpy_inputs) -> array``, a peer
      that runs on the host (NumPy, scipy), timed in the same process on the
      NumPy inputs; value-only workloads only.
  """

  name: str
  family: str
  make_inputs: Callable[[bool, np.random.Generator], Sequence[Any]]
  impls: Mapping[str, Callable[..., Any]]
  description: str = ""
  torch_factory: Callable[[ModuleType], Callable[..., Any]] | None = None
  roofline: Callable[..., Any] | None = None
  min_bytes: Callable[[Sequence[np.ndarray]], int] | None = None
  rtol: float = 1e-4
  atol: float = 1e-6
  grad_rtol: float | None = None
  grad: bool = True
  host_impls: Mapping[str, Callable[..., Any]] = dataclasses.field(default_factory=dict)


_REGISTRY: dict[str, Workload] = {}


def register(workload: Workload) -> Workload:
  """Adds ``workload`` to the registry (names are unique) and returns it."""
  if workload.name in _REGISTRY:
    raise ValueError(f"workload {workload.name!r} is already registered")
  if JAXLOSS not in workload.impls:
    raise ValueError(f"workload {workload.name!r} has no {JAXLOSS!r} implementation")
  reserved = {ROOFLINE, COPYTO, TORCH_EAGER, TORCH_COMPILE} & set(workload.impls)
  reserved |= {ROOFLINE, COPYTO, TORCH_EAGER, TORCH_COMPILE, JAXLOSS} & set(workload.host_impls)
  if workload.host_impls and workload.grad:
    raise ValueError(f"workload {workload.name!r}: host_impls need a value-only workload "
                     f"(grad=False)")
  if workload.torch_factory is not None and not workload.grad:
    raise ValueError(f"workload {workload.name!r}: torch rows time a gradient; a value-only "
                     f"workload (grad=False) takes host_impls instead")
  if reserved:
    raise ValueError(f"workload {workload.name!r} uses reserved names {sorted(reserved)}")
  _REGISTRY[workload.name] = workload
  return workload


def all_workloads() -> list[Workload]:
  """Imports every ``bench.workloads_*`` module and returns the registry in order."""
  package = importlib.import_module("bench")
  for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
    if info.name.startswith("workloads_"):
      importlib.import_module(f"bench.{info.name}")
  return list(_REGISTRY.values())


# --------------------------------------------------------------------------- roofline


def _bits(x: jax.Array) -> jax.Array:
  """``x`` reinterpreted as unsigned integers of the same width (bool -> uint8)."""
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint8)
  return lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * x.dtype.itemsize}"))


def _fit(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Broadcasts ``x`` to ``shape`` (leading-prefix or size-1 axes), else reduces it."""
  if x.ndim < len(shape) and tuple(x.shape) == shape[: x.ndim]:
    x = x.reshape(x.shape + (1,) * (len(shape) - x.ndim))
  if x.ndim == len(shape) and all(d in (1, s) for d, s in zip(x.shape, shape, strict=True)):
    return jnp.broadcast_to(x, shape)
  return jnp.broadcast_to(jnp.max(x), shape)


def streaming_roofline(*inputs: jax.Array) -> jax.Array:
  """The default roofline: reads every input once, writes one array like input 0.

  Bit-level on purpose: every input is reinterpreted as unsigned integers and
  XOR-ed into input 0's bits, so the kernel costs memory traffic only (float
  arithmetic, slow on bf16 on CPU, would inflate the yardstick). An input that
  neither matches input 0's shape, nor is a leading prefix of it, nor
  broadcasts through size-1 axes is reduced to one scalar (still read once).
  """
  x0 = jnp.asarray(inputs[0])
  acc = _bits(x0)
  for x in inputs[1:]:
    acc = acc ^ _fit(_bits(jnp.asarray(x)).astype(acc.dtype), tuple(x0.shape))
  return lax.bitcast_convert_type(acc, x0.dtype)


def minimal_bytes(workload: Workload, inputs: Sequence[np.ndarray]) -> int:
  """The workload's minimal bytes: its override, else inputs once + one gradient write."""
  if workload.min_bytes is not None:
    return int(workload.min_bytes(inputs))
  return sum(int(x.nbytes) for x in inputs) + int(inputs[0].nbytes)


# --------------------------------------------------------------------------- XLA stats

_TRIVIAL_OPS = frozenset({"parameter", "constant", "tuple", "get-tuple-element", "bitcast"})
_OPCODE = re.compile(r"^\s*(?:ROOT\s+)?\S+\s*=\s*\S.*?\s([a-z][a-z0-9_-]*)\(")


def count_kernels(hlo_text: str) -> int:
  """Counts the non-trivial instructions (fusions, custom-calls, copies...) of ENTRY."""
  count, in_entry = 0, False
  for line in hlo_text.splitlines():
    if line.startswith("ENTRY"):
      in_entry = True
    elif in_entry and line.startswith("}"):
      break
    elif in_entry and (match := _OPCODE.match(line)) and match.group(1) not in _TRIVIAL_OPS:
      count += 1
  return count


@dataclasses.dataclass(frozen=True)
class XlaStats:
  """What XLA says about one compiled executable (``None`` where it would not say)."""

  bytes_accessed: float | None
  kernels: int | None
  temp_bytes: int | None


def xla_stats(compiled: Any) -> XlaStats:
  """Bytes accessed, ENTRY kernel count and temp size of a ``jax.stages.Compiled``."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # broad on purpose: optional on some backends
    cost = None
  if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
    cost = cost[0] if cost else None
  accessed = cost.get("bytes accessed") if isinstance(cost, Mapping) else None
  try:
    temp = int(compiled.memory_analysis().temp_size_in_bytes)
  except Exception:  # broad on purpose: optional on some backends
    temp = None
  try:
    kernels = count_kernels(compiled.as_text())
  except Exception:  # broad on purpose: optional on some backends
    kernels = None
  return XlaStats(None if accessed is None else float(accessed), kernels, temp)


# --------------------------------------------------------------------------- contenders


@dataclasses.dataclass
class Contender:
  """One thing timed: ``call()`` runs it once, synchronously (value and gradient)."""

  name: str
  call: Callable[[], Any]
  result: Callable[[], tuple[float, np.ndarray]] | None = None  # (value, grad) to check
  stats: XlaStats | None = None


def _output_result(out: Any) -> tuple[float, np.ndarray]:
  """A value-only contender's ``(sum, output)``: checked like ``(value, gradient)``."""
  out = np.asarray(out, np.float64)
  return float(np.sum(out)), out


def _jax_contender(name: str, fn: Callable[..., Any], args: Sequence[jax.Array],
                   grad: bool = True, check: bool = True) -> Contender:
  compiled = jax.jit(jax.value_and_grad(fn) if grad else fn).lower(*args).compile()

  def call() -> Any:
    return jax.block_until_ready(compiled(*args))

  def result() -> tuple[float, np.ndarray]:
    if not grad:
      return _output_result(call())
    value, g = call()
    return float(value), np.asarray(g, np.float64)

  return Contender(name, call, result if check else None, xla_stats(compiled))


def _host_contender(name: str, fn: Callable[..., Any], host_inputs: Sequence[np.ndarray]
                    ) -> Contender:
  """A NumPy/scipy peer of a value-only workload, called on the host inputs."""
  return Contender(name, lambda: fn(*host_inputs), lambda: _output_result(fn(*host_inputs)))


def _copy_contender(x0: np.ndarray) -> Contender:
  src = np.array(x0)
  dst = np.empty_like(src)
  return Contender(COPYTO, lambda: np.copyto(dst, src))


def _torch_contenders(torch: ModuleType, fn: Callable[..., Any],
                      host_inputs: Sequence[np.ndarray], notes: list[str]) -> list[Contender]:
  """torch eager and torch.compile, value and gradient via ``torch.autograd.grad``."""

  def tensor(x: np.ndarray) -> Any:  # NumPy has no bfloat16: go through its bits
    if x.dtype.name == "bfloat16":
      return torch.from_numpy(x.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.array(x))

  x0 = tensor(host_inputs[0]).requires_grad_(True)
  rest = [tensor(x) for x in host_inputs[1:]]

  def contender(name: str, impl: Callable[..., Any]) -> Contender:
    def call() -> Any:
      loss = impl(x0, *rest)
      (g,) = torch.autograd.grad(loss, x0)
      return loss, g

    def result() -> tuple[float, np.ndarray]:
      loss, g = call()
      return float(loss.detach()), g.detach().to(torch.float64).numpy()

    call()  # torch.compile compiles here; a missing C++ toolchain fails here
    return Contender(name, call, result)

  out = []
  for name in (TORCH_EAGER, TORCH_COMPILE):
    try:
      out.append(contender(name, fn if name == TORCH_EAGER else torch.compile(fn, dynamic=False)))
    except Exception as e:  # broad on purpose: note it, go on without it
      notes.append(f"{name} skipped: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
  return out


class MismatchError(AssertionError):
  """Implementations of one workload disagree in value or gradient."""


def check_agreement(workload: Workload, contenders: Sequence[Contender]) -> float:
  """Raises :class:`MismatchError` unless all agree with jaxloss; returns the worst error.

  The error is relative: ``|v - v_ref| / |v_ref|`` for the value and
  ``max |g - g_ref| / max |g_ref|`` for the gradient (for a value-only workload:
  the sum of the output, and the output).
  """
  outs = {c.name: c.result() for c in contenders if c.result is not None}
  ref_v, ref_g = outs[JAXLOSS]
  if not (np.isfinite(ref_v) and np.all(np.isfinite(ref_g))):
    raise MismatchError(f"{workload.name}: jaxloss gives a non-finite value or gradient")
  g_scale = max(float(np.max(np.abs(ref_g), initial=0.0)), np.finfo(np.float32).tiny)
  worst, problems = 0.0, []
  for name, (v, g) in outs.items():
    if g.shape != ref_g.shape:
      problems.append(f"{name}: gradient shape {g.shape} != {ref_g.shape}")
      continue
    v_err = abs(v - ref_v)
    g_err = float(np.max(np.abs(g - ref_g), initial=0.0))
    worst = max(worst, v_err / max(abs(ref_v), 1e-30), g_err / g_scale)
    if not v_err <= workload.atol + workload.rtol * abs(ref_v):
      problems.append(f"{name}: value {v!r} vs jaxloss {ref_v!r}")
    g_rtol = workload.rtol if workload.grad_rtol is None else workload.grad_rtol
    if not g_err <= (0.0 if workload.grad else workload.atol) + g_rtol * g_scale:
      what = "gradient" if workload.grad else "output"
      problems.append(f"{name}: {what} max |diff| {g_err:.3g} (max |{what}| {g_scale:.3g})")
  if problems:
    raise MismatchError(
        f"workload {workload.name!r}: implementations disagree with jaxloss "
        f"(rtol={workload.rtol}, atol={workload.atol}, grad_rtol={workload.grad_rtol}):\n  "
        + "\n  ".join(problems))
  return worst


# --------------------------------------------------------------------------- timing

_MAX_CALLS = 100_000


def _time_block(call: Callable[[], Any], n: int) -> float:
  """One untimed call (wakes the thread pool), then ``n`` timed back-to-back calls."""
  call()
  start = time.perf_counter()
  for _ in range(n):
    call()
  return time.perf_counter() - start


def calibrate(call: Callable[[], Any], block_s: float) -> int:
  """The number of back-to-back calls that lasts about ``block_s``."""
  n = 1
  while True:
    elapsed = _time_block(call, n)
    if elapsed >= block_s / 4 or n >= _MAX_CALLS:
      return int(np.clip(round(n * block_s / max(elapsed, 1e-9)), 1, _MAX_CALLS))
    n = min(4 * n, _MAX_CALLS)


@dataclasses.dataclass(frozen=True)
class Timing:
  """Per-call seconds: one sample per round, each a block's time / its call count."""

  samples_s: tuple[float, ...]
  calls_per_block: int

  @property
  def median_s(self) -> float:
    return float(np.median(self.samples_s))

  @property
  def iqr_s(self) -> float:
    q1, q3 = np.percentile(self.samples_s, [25, 75])
    return float(q3 - q1)


def time_interleaved(contenders: Sequence[Contender], *, rounds: int, block_s: float,
                     rng: np.random.Generator, warmup: int = 3,
                     on_round: Callable[[], None] = lambda: None) -> dict[str, Timing]:
  """Times all contenders in one process, interleaved in a new random order each round.

  Warm-up (``warmup`` calls each), then per contender a calibrated call count
  ``n`` whose block lasts about ``block_s``. Each round visits the contenders
  in a fresh order; each visit is one untimed call then ``n`` timed calls, and
  yields one per-call sample (block time / ``n``).
  """
  for c in contenders:
    for _ in range(warmup):
      c.call()
  calls = {c.name: calibrate(c.call, block_s) for c in contenders}
  samples: dict[str, list[float]] = {c.name: [] for c in contenders}
  for _ in range(rounds):
    for i in rng.permutation(len(contenders)):
      c = contenders[i]
      samples[c.name].append(_time_block(c.call, calls[c.name]) / calls[c.name])
    on_round()
  return {name: Timing(tuple(s), calls[name]) for name, s in samples.items()}


# --------------------------------------------------------------------------- one workload


@dataclasses.dataclass(frozen=True)
class WorkloadResult:
  """Everything measured for one workload, in contender order."""

  workload: Workload
  input_specs: tuple[str, ...]
  min_bytes: int
  grad_bytes: int
  timings: dict[str, Timing]
  stats: dict[str, XlaStats]
  max_rel_error: float
  notes: tuple[str, ...]


def _seed(seed: int, name: str, stream: int) -> np.random.Generator:
  return np.random.default_rng([seed, zlib.crc32(name.encode()), stream])


def input_spec(x: np.ndarray) -> str:
  """``f32[4096,1024]``-style description of an array."""
  dt = np.dtype(x.dtype)
  short = {"f": "f", "i": "s", "u": "u", "b": "pred", "c": "c"}.get(dt.kind, dt.kind)
  kind = short if dt.kind == "b" else f"{short}{8 * dt.itemsize}"
  kind = "bf16" if dt.name == "bfloat16" else kind
  return f"{kind}[{','.join(map(str, x.shape))}]"


def run_workload(workload: Workload, *, quick: bool, rounds: int, block_s: float,
                 seed: int, torch: ModuleType | None,
                 status: Callable[[str], None] = lambda s: None,
                 on_round: Callable[[], None] = lambda: None) -> WorkloadResult:
  """Builds, checks, measures and times one workload.

  1. Contenders: ``jax.jit(jax.value_and_grad(fn))`` of every implementation
     (w.r.t. input 0; ``jax.jit(fn)`` and the host peers for a value-only
     workload), the roofline, ``np.copyto`` of input 0 and, when
     ``torch`` is given, torch eager and ``torch.compile``.
  2. :func:`check_agreement` with jaxloss (raises :class:`MismatchError`).
  3. XLA's bytes accessed, kernel count and temp size of each compiled one.
  4. :func:`time_interleaved`.
  """
  notes: list[str] = []
  status(f"{workload.name}: inputs")
  host = [np.asarray(x) for x in workload.make_inputs(quick, _seed(seed, workload.name, 0))]
  args = [jax.device_put(x) for x in host]
  status(f"{workload.name}: compiling")
  contenders = [_jax_contender(name, fn, args, grad=workload.grad)
                for name, fn in workload.impls.items()]
  contenders += [_host_contender(name, fn, host) for name, fn in workload.host_impls.items()]
  if torch is not None and workload.torch_factory is not None:
    status(f"{workload.name}: torch")
    contenders += _torch_contenders(torch, workload.torch_factory(torch), host, notes)
  roofline = workload.roofline or streaming_roofline
  contenders += [_jax_contender(ROOFLINE, roofline, args, grad=False, check=False),
                 _copy_contender(host[0])]
  status(f"{workload.name}: checking")
  max_err = check_agreement(workload, contenders)
  status(f"{workload.name}: timing")
  timings = time_interleaved(contenders, rounds=rounds, block_s=block_s,
                             rng=_seed(seed, workload.name, 1), on_round=on_round)
  return WorkloadResult(
      workload=workload,
      input_specs=tuple(input_spec(x) for x in host),
      min_bytes=minimal_bytes(workload, host),
      grad_bytes=int(host[0].nbytes),
      timings=timings,
      stats={c.name: c.stats for c in contenders if c.stats is not None},
      max_rel_error=max_err,
      notes=tuple(notes),
  )
