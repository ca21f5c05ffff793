"""A shared ``jax.jit`` per (jaxloss function, options) for the peer-parity suites."""

from __future__ import annotations

import functools

import jax
import numpy as np

import jaxloss

_JITTED = {}


def _jit(fn, options):
  """One ``jax.jit`` of ``fn`` per distinct options, reused by every case that shares them."""
  key = (fn, tuple(sorted((k, (v.shape, str(v.dtype), v.tobytes()) if isinstance(v, np.ndarray)
                           else v) for k, v in options.items())))
  if key not in _JITTED:
    _JITTED[key] = jax.jit(functools.partial(fn, **options))
  return _JITTED[key]


class _Jitted:
  """``J.name(*arrays, **options)`` runs ``jaxloss.name`` under a shared ``jax.jit``.

  One compiled program per case is several times faster than eager dispatch,
  which compiles every primitive for every new shape.
  """

  def __getattr__(self, name):
    fn = getattr(jaxloss, name)

    def call(*arrays, **options):
      return np.asarray(_jit(fn, options)(*arrays))
    return call


J = _Jitted()
