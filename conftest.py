"""Strict JAX configuration shared by the tests and the doctests.

Set before any backend starts: 8 virtual CPU devices (for the sharding tests),
strict dtype promotion and no implicit rank promotion.
"""

import jax
from hypothesis import settings

# Hypothesis: seeded (derandomized) and small by default, so the fast run is deterministic
# and bounded; `--hypothesis-profile=ci` (run by .ci/run) explores more examples.
settings.register_profile("default", derandomize=True, max_examples=12, deadline=None)
settings.register_profile("ci", derandomize=True, max_examples=60, deadline=None)
settings.load_profile("default")

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


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
}
# Contract checks that compile a program of their own per case (grad of grad, x64,
# shard_map, export, sharded jit, vmap, every label dtype ...): representative cases only.
_HEAVY_CONTRACT = {
    "test_check_grads_float64", "test_float64_under_x64",
    "test_shard_map_with_axis_name_equals_unsharded", "test_export_lowers_for_cpu_cuda_tpu",
    "test_jit_with_batch_sharded_inputs_equals_unsharded", "test_vmap_equals_loop",
    "test_every_integer_label_dtype_equals_int32",
    "test_nan_and_inf_under_the_mask_leave_every_gradient_clean",
    "test_checked_names_every_input_holding_unmasked_nan",
    "test_low_precision_inputs_compute_in_f32",
}
# Whole tests that take seconds each.
_SLOW_TESTS = {
    "test_sharding.py": {"test_jit_with_named_sharding_equals_unsharded",
                         "test_shard_map_with_axis_name_equals_unsharded",
                         "test_export_check_cli_lowers_and_runs_every_function",
                         "test_batch_dice_inside_shard_map_equals_unsharded"},
    "test_examples.py": {"test_example_runs_in_tiny_mode", "test_example_train_step_exports"},
    "test_bench_smoke.py": {"test_quick_bench_runs_and_writes_reports"},
    "test_reliability.py": {
        "test_custom_vjp_losses_are_reverse_mode_only_with_a_clear_error[earth_mover_distance]",
        "test_custom_vjp_losses_are_reverse_mode_only_with_a_clear_error[propel_loss]"},
    "test_overlap_reliability.py": {
        "test_compositions_are_reverse_mode_only_with_working_second_derivatives"},
    "test_semi_supervised.py": {"test_consistency_stop_gradient_on_the_target[mse]"},
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
  if name in _HEAVY_CONTRACT:
    return not representative
  # Per-reduction checks: every case with "weighted_mean", representative ones with all.
  reduction = params.get("reduction")
  return reduction is not None and reduction != "weighted_mean" and not representative


def pytest_collection_modifyitems(config, items):
  import pytest

  for item in items:
    if _is_slow(item):
      item.add_marker(pytest.mark.slow)
