"""Strict JAX configuration shared by the tests and the doctests.

Set before any backend starts: 8 virtual CPU devices (for the sharding tests),
strict dtype promotion and no implicit rank promotion.
"""

import os
import shutil
import tempfile

# --------------------------------------------------------------------------- cheaper XLA compiles
# Most of the fast run's time is XLA:CPU compiling hundreds of small programs (about 25 ms
# each); the programs themselves run in microseconds. For the test run only, and before any
# backend starts, compile without LLVM's backend optimisations and without the CPU fusion
# emitters, in one codegen split: measured on two cores, 80 distinct small programs compile
# in 8.5-9.6 s against 16.5-18.7 s with the defaults. Only code generation changes, and the
# suite's tolerances hold with and without these flags; JAXLOSS_TEST_DEFAULT_XLA_FLAGS=1
# runs with XLA's defaults. A user's own XLA_FLAGS are kept and win (they come last); the
# xdist workers and the subprocesses the tests start inherit the variable.
_TEST_XLA_FLAGS = (
    "--xla_backend_optimization_level=0",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_parallel_codegen_split_count=1",
)
if (os.environ.get("JAXLOSS_TEST_DEFAULT_XLA_FLAGS") != "1"
    and _TEST_XLA_FLAGS[0] not in os.environ.get("XLA_FLAGS", "")):
  os.environ["XLA_FLAGS"] = " ".join(
      (*_TEST_XLA_FLAGS, os.environ.get("XLA_FLAGS", ""))).strip()

import jax  # noqa: E402  (after XLA_FLAGS)
from hypothesis import settings  # noqa: E402

# Hypothesis: seeded (derandomized) and small by default, so the fast run is deterministic
# and bounded; `--hypothesis-profile=ci` (run by .ci/run) explores more examples.
settings.register_profile("default", derandomize=True, max_examples=12, deadline=None)
settings.register_profile("ci", derandomize=True, max_examples=60, deadline=None)
settings.load_profile("default")

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


# --------------------------------------------------------------------------- compile once per run
# Most of the suite's time is XLA compiling small programs, and many tests build programs
# that another test (or the other xdist worker) already compiled: a fresh `jax.jit` of a
# new lambda misses JAX's in-memory caches even when its HLO is the same. JAX's persistent
# compilation cache is keyed by the HLO (and the jax version and flags), so one directory
# per run, shared by the workers and cached from the first compile on, compiles each
# distinct program once. It starts empty on every run (the measured time is a cold run's)
# and is removed at the end; JAXLOSS_TEST_JIT_CACHE=DIR keeps a cache of your own instead.
_CACHE_ENV = "JAXLOSS_TEST_JIT_CACHE"


def pytest_configure(config):
  if not hasattr(config, "workerinput") and _CACHE_ENV not in os.environ:
    # The controller (or a run without xdist) makes the directory; the workers it starts
    # inherit the variable.
    os.environ[_CACHE_ENV] = config._jaxloss_jit_cache = tempfile.mkdtemp(
        prefix="jaxloss-jit-cache-")
  jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def pytest_unconfigure(config):
  path = getattr(config, "_jaxloss_jit_cache", None)
  if path is not None:
    shutil.rmtree(path, ignore_errors=True)
    del os.environ[_CACHE_ENV]


# --------------------------------------------------------------------------- fast and slow
# `pytest` (the README's command) runs every behaviour on a representative loss of each
# family; `pytest -m slow` (also run by .ci/run) runs the rest of the matrix: the
# expensive contract checks on the other registered losses, the other reductions of the
# per-reduction checks, every public function under sharding, the examples and the bench.
# Together the two runs are exactly the full suite.

REPRESENTATIVE_CASES = {
    "mean_squared_error", "softmax_cross_entropy[int]", "softmax_cross_entropy[prob]",
    "sigmoid_binary_cross_entropy", "softmax_focal_loss[int]", "sigmoid_focal_loss",
    "earth_mover_distance[r=2]", "propel_loss", "linear_softmax_cross_entropy",
    "dice_loss[softmax]", "softmax_ce_dice_loss", "sigmoid_bce_dice_loss",
    "lovasz_softmax_loss[per_image]", "pseudo_label_cross_entropy[hard]",
    "boundary_loss[softmax]",
}
# The per-reduction checks that stay in the fast run for every case (cheapest of them).
_EVERY_CASE_PER_REDUCTION = {"test_where_equals_slicing"}
# shard_map (2-5 s a case: eight virtual devices): in the fast run for one case of each
# way a mapped axis enters the loss (a psum-ed reduction, psum-ed batch-level overlap
# sums, a batch Dice inside a composition, a vocabulary-parallel kernel, the EMD
# kernel); the other representative cases run it in `pytest -m slow`.
_SHARD_MAP_FAST_CASES = {
    "softmax_cross_entropy[int]", "dice_loss[softmax]", "sigmoid_bce_dice_loss",
    "linear_softmax_cross_entropy", "earth_mover_distance[r=2]",
}
# The batch-sharded jit check (NamedSharding) too.
_SHARDED_CHECKS = {"test_shard_map_with_axis_name_equals_unsharded",
                   "test_jit_with_batch_sharded_inputs_equals_unsharded"}
# Variants of a family whose kernel shares its data path with another representative
# case: check_grads (their own rules) and the per-reduction checks stay in the fast run;
# the generic transform checks (jit, vmap, float64, extremes, axis) run in -m slow.
_VARIANT_CASES = {"softmax_cross_entropy[prob]", "sigmoid_focal_loss",
                  "softmax_focal_loss[int]", "sigmoid_bce_dice_loss"}
_GENERIC_CHECKS = {"test_jit_equals_eager", "test_vmap_equals_loop", "test_float64_under_x64",
                   "test_finite_at_extreme_inputs", "test_axis_equals_moveaxis"}
# Contract checks that compile nothing or one small program: every case, fast run.
_CHEAP_CONTRACT = {
    "test_static_errors_name_the_argument", "test_scalar_options_refuse_nan_inf_and_arrays",
    "test_reductions_are_consistent",
}
# Whole tests that take seconds each.
_SLOW_TESTS = {
    "test_sharding.py": {"test_jit_with_named_sharding_equals_unsharded",
                         "test_shard_map_with_axis_name_equals_unsharded",
                         "test_export_check_cli_lowers_and_runs_every_function",
                         "test_batch_dice_inside_shard_map_equals_unsharded"},
    "test_examples.py": {"test_example_runs_in_tiny_mode", "test_example_train_step_exports"},
    "test_bench_smoke.py": {"test_quick_bench_runs_and_writes_reports",
                            "test_emd_formulations_agree_and_are_timed"},
    "test_reliability.py": {
        "test_custom_vjp_losses_are_reverse_mode_only_with_a_clear_error[earth_mover_distance]",
        "test_custom_vjp_losses_are_reverse_mode_only_with_a_clear_error[propel_loss]"},
    "test_overlap_reliability.py": {
        "test_compositions_are_reverse_mode_only_with_working_second_derivatives"},
    # ([mse] stays in the fast run: the cheaper of the two.)
    "test_semi_supervised.py": {"test_consistency_stop_gradient_on_the_target[kl]"},
    # One parametrisation each stays in the fast run.
    "test_distribution.py": {
        "test_many_bins_use_the_scan_prefix_sum_and_equal_the_formula[2.0]"},
    "test_classification.py": {"test_softmax_focal_integer_kernel_equals_one_hot_autodiff[0.0]"},
    "test_segmentation.py": {"test_fused_bce_dice_equals_its_public_parts[False-sum]"},
    "test_propel.py": {"test_value_and_gradients_equal_naive_autodiff",
                       "test_check_grads_second_order_float64",
                       "test_float32_stays_finite_and_accurate_where_linear_space_overflows"},
}


def _is_slow(item) -> bool:
  file = item.path.name
  name = getattr(item, "originalname", item.name)
  if name in _SLOW_TESTS.get(file, ()) or item.name in _SLOW_TESTS.get(file, ()):
    return True
  params = getattr(item, "callspec", None)
  params = params.params if params is not None else {}
  case = params.get("case")
  if file not in ("test_contract.py", "test_contract_hostile.py") or case is None:
    return False
  representative = str(case) in REPRESENTATIVE_CASES
  reduction = params.get("reduction")
  if reduction is not None:
    # Per-reduction checks: representative cases with "weighted_mean" (the reduction
    # with every denominator) and "none"; every other case with "weighted_mean" in the
    # cheapest of these checks (where-equals-slicing), the rest in `pytest -m slow`. The
    # other named reductions are the same core, checked against each other for every
    # case by test_reductions_are_consistent.
    if representative and name in _SHARDED_CHECKS:
      return not (reduction == "weighted_mean" and str(case) in _SHARD_MAP_FAST_CASES)
    if representative:
      return reduction not in ("weighted_mean", "none")
    return not (reduction == "weighted_mean" and name in _EVERY_CASE_PER_REDUCTION)
  if name in _CHEAP_CONTRACT:
    return False
  if name in _SHARDED_CHECKS:
    return str(case) not in _SHARD_MAP_FAST_CASES
  if name in _GENERIC_CHECKS and str(case) in _VARIANT_CASES:
    return True
  # Every other check: representative cases (one or two per family) in the fast run.
  return not representative


def pytest_collection_modifyitems(config, items):
  import pytest

  for item in items:
    if _is_slow(item):
      item.add_marker(pytest.mark.slow)
