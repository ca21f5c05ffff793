"""Every public loss of jaxloss has a bench workload (``python -m bench``).

Which losses a workload benches is read from the workloads themselves: each
public jaxloss function is wrapped by a spy, and every ``jaxloss`` (and
``jaxloss_*``) implementation of every registered workload is traced once at
its ``--quick`` size with :func:`jax.eval_shape` (no compile, no run). A new
workload in any ``bench/workloads_*.py`` is picked up with no edit here.

A public name is a *loss* when it ends in one of :data:`LOSS_SUFFIXES` or is
in :data:`EXTRA_LOSSES`, unless :data:`NOT_LOSSES` names it; every public name
must be classified, so a new loss with an unusual name cannot slip through.
"""

from __future__ import annotations

import collections
import functools
import sys

import jax
import numpy as np
import pytest

import jaxloss

harness = pytest.importorskip("bench.harness")

LOSS_SUFFIXES = ("_loss", "_entropy", "_error", "_distance")
# Losses whose names end otherwise (none yet).
EXTRA_LOSSES: frozenset[str] = frozenset()
# Public names that are not losses, so they need no workload (they may still have one).
NOT_LOSSES = frozenset({
    # constants, result types and runtime-check switches
    "REDUCTIONS", "ClassCounts", "checked", "value_checks",
    # reductions of losses computed elsewhere (every loss's own workload times them)
    "reduce_loss", "multi_head_loss",
    # metrics: evaluation only, no gradient
    "accuracy", "confusion_matrix", "multilabel_confusion_matrix", "dice_per_class",
    "iou_per_class", "mean_iou",
    # surface metrics on distance transforms
    "hausdorff_distance", "average_surface_distance", "surface_dice",
    # class weights, label statistics and per-class diagnostics
    "effective_number_weights", "inverse_frequency_weights", "median_frequency_weights",
    "class_pixel_counts", "class_breakdown", "labeled_mask",
    # shape helpers (the distance transform may get a workload of its own)
    "distance_transform", "signed_distance", "soft_skeleton",
    # distribution and PROPEL helpers: targets, read-outs and building blocks
    "counts_to_distribution", "scores_to_distribution", "score_mean_std",
    "mixture_mean_and_variance", "split_mixture_outputs", "gaussian_overlap",
})
# Losses exported before their workloads landed: each must be benched soon, and must leave
# this set the moment its workload exists (test_pending_losses_are_still_pending says so).
PENDING_WORKLOADS: frozenset[str] = frozenset()


def _is_loss(name: str) -> bool:
  return name not in NOT_LOSSES and (name.endswith(LOSS_SUFFIXES) or name in EXTRA_LOSSES)


LOSSES = sorted(n for n in jaxloss.__all__ if _is_loss(n))


def benched_functions() -> dict[str, set[str]]:
  """Public function name -> the workloads whose jaxloss rows call it."""
  workloads = harness.all_workloads()
  modules = [m for name, m in sys.modules.items() if name.startswith("bench.workloads_")]
  found: dict[str, set[str]] = collections.defaultdict(set)
  current: list[str] = [""]

  def spy(name, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      found[name].add(current[0])
      return fn(*args, **kwargs)
    return wrapper

  with pytest.MonkeyPatch.context() as mp:
    for name in jaxloss.__all__:
      fn = getattr(jaxloss, name)
      if not callable(fn) or isinstance(fn, type):
        continue
      wrapped = spy(name, fn)
      mp.setattr(jaxloss, name, wrapped)
      for module in modules:  # `from jaxloss import x` bindings too
        for attr, value in list(vars(module).items()):
          if value is fn:
            mp.setattr(module, attr, wrapped)
    for w in workloads:
      inputs = w.make_inputs(True, np.random.default_rng(0))
      for impl, fn in w.impls.items():
        if impl == harness.JAXLOSS or impl.startswith(harness.JAXLOSS + "_"):
          current[0] = w.name
          jax.eval_shape(fn, *inputs)
  return dict(found)


@pytest.fixture(scope="module")
def benched() -> dict[str, set[str]]:
  return benched_functions()


def test_every_public_name_is_classified():
  unclassified = [n for n in jaxloss.__all__ if n not in NOT_LOSSES and not _is_loss(n)]
  assert not unclassified, (f"{unclassified}: add each to EXTRA_LOSSES (and give it a "
                            "workload) or to NOT_LOSSES with the reason")


def test_every_loss_has_a_workload(benched):
  missing = [n for n in LOSSES if n not in benched and n not in PENDING_WORKLOADS]
  assert not missing, (f"public losses without a bench workload: {missing}; add one to a "
                       "bench/workloads_<family>.py (jaxloss vs the hand-written composition)")


def test_pending_losses_are_still_pending(benched):
  # (A pending name not exported yet is fine: the set may land before the loss does.)
  done = sorted(PENDING_WORKLOADS & set(benched))
  assert not done, f"{done} now have workloads: remove them from PENDING_WORKLOADS"


def test_the_overlap_and_semi_supervised_losses_are_benched(benched):
  expected = {
      "dice_loss": {"dice"}, "jaccard_loss": {"jaccard"}, "tversky_loss": {"tversky"},
      "generalized_dice_loss": {"generalized_dice"}, "lovasz_hinge_loss": {"lovasz_hinge"},
      "pseudo_label_cross_entropy": {"pseudo_label"},
      "consistency_loss": {"consistency_kl", "consistency_mse"},
      "entropy_minimization_loss": {"entropy_min"},
  }
  assert {n: benched.get(n, set()) & w for n, w in expected.items()} == expected
