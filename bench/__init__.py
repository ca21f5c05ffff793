"""The jaxloss benchmark suite: ``python -m bench`` (see :mod:`bench.__main__`).

Every loss family has a ``bench/workloads_<family>.py`` that registers its
workloads at import time; the harness discovers these modules by name::

  from bench.harness import Workload, register

  register(Workload(
      name="mse",
      family="regression",
      make_inputs=lambda quick, rng: (p, t, w),  # NumPy arrays; input 0 is differentiated
      impls={"jaxloss": jaxloss_fn, "naive_jax": naive_fn, "optax": optax_fn},
      torch_factory=lambda torch: torch_fn,      # optional
  ))

Each implementation maps the inputs to a scalar loss; the harness times
``jax.jit(jax.value_and_grad(fn))`` against a streaming roofline after
checking that all implementations agree.
"""

from bench.harness import Workload as Workload
from bench.harness import register as register

__all__ = ["Workload", "register"]
