"""Strict JAX configuration shared by the tests and the doctests.

Set before any backend starts: 8 virtual CPU devices (for the sharding tests),
strict dtype promotion and no implicit rank promotion.
"""

import jax

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
