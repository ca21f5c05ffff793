"""class_breakdown with multi-hot labels: per-class means of sigmoid losses."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss


def _case(seed: int = 0, shape=(4, 6, 6, 5)):
  rng = np.random.default_rng([16, seed])
  logits = rng.normal(size=shape).astype(np.float32)
  y = rng.uniform(size=shape) < 0.3
  return logits, y


def _reference(l, u, m=None):
  l, u = np.asarray(l, np.float64), np.asarray(u, np.float64)
  if m is not None:
    u = u * m
  axes = tuple(range(l.ndim - 1))
  total, count = (u * l).sum(axes), u.sum(axes)
  return np.where(count > 0, total / np.where(count > 0, count, 1), 0.0)


@pytest.mark.parametrize("members", ["positives", "negatives", "all"])
def test_multilabel_breakdown_equals_per_class_member_means(members):
  logits, y = _case()
  per = jaxloss.sigmoid_binary_cross_entropy(logits, y.astype(np.float32), reduction="none")
  u = {"positives": y, "negatives": ~y, "all": np.ones_like(y)}[members]
  got = jaxloss.class_breakdown(per, y, 5, axis=-1, members=members)
  np.testing.assert_allclose(got, _reference(per, u), rtol=1e-6)
  # bool, 0/1 integer and float memberships agree.
  for labels in (y.astype(np.uint8), y.astype(np.float32)):
    np.testing.assert_array_equal(
        jaxloss.class_breakdown(per, labels, 5, axis=-1, members=members), got)


def test_multilabel_breakdown_of_a_per_element_loss_shares_it_among_the_classes():
  logits, y = _case(1)
  per_pixel = np.abs(logits).sum(-1)
  got = jaxloss.class_breakdown(per_pixel, y, 5, axis=-1)
  np.testing.assert_allclose(got, _reference(np.broadcast_to(per_pixel[..., None], y.shape), y),
                             rtol=1e-6)


def test_multilabel_breakdown_class_axis_may_be_anywhere():
  logits, y = _case(2)
  per = jaxloss.sigmoid_binary_cross_entropy(logits, y.astype(np.float32), reduction="none")
  moved = jaxloss.class_breakdown(np.moveaxis(per, -1, 1), np.moveaxis(y, -1, 1), 5, axis=1)
  np.testing.assert_allclose(moved, jaxloss.class_breakdown(per, y, 5, axis=-1), rtol=1e-6)


def test_multilabel_breakdown_where_equals_slicing():
  logits, y = _case(3)
  per = jaxloss.sigmoid_binary_cross_entropy(logits, y.astype(np.float32), reduction="none")
  per = per.at[1].set(jnp.nan)  # a masked image may hold anything
  keep = np.array([True, False, True, True])
  got = jaxloss.class_breakdown(per, y, 5, axis=-1, where=keep)
  np.testing.assert_allclose(got, jaxloss.class_breakdown(per[keep], y[keep], 5, axis=-1),
                             rtol=1e-6)


def test_multilabel_breakdown_poisons_for_a_label_that_is_not_a_membership():
  logits, _ = _case(4)
  y = np.zeros(logits.shape, np.float32)
  y[0, 0, 0, 0] = np.nan
  assert np.all(np.isnan(jaxloss.class_breakdown(np.abs(logits), y, 5, axis=-1)))
  y[0, 0, 0, 0] = 2.0
  assert np.all(np.isnan(jaxloss.class_breakdown(np.abs(logits), y, 5, axis=-1)))


def test_multilabel_breakdown_shows_the_failing_rare_class():
  # Class 3 is rare and always missed: its positives' BCE is large, while its mean
  # over all pixels (dominated by easy negatives) looks like the others.
  rng = np.random.default_rng(5)
  y = rng.uniform(size=(16, 8, 8, 5)) < np.array([0.4, 0.3, 0.3, 0.02, 0.3])
  logits = np.where(y, 3.0, -3.0).astype(np.float32)
  logits[..., 3] = -3.0
  per = jaxloss.sigmoid_binary_cross_entropy(logits, y.astype(np.float32), reduction="none")
  positives = jaxloss.class_breakdown(per, y, 5, axis=-1)
  everything = jaxloss.class_breakdown(per, y, 5, axis=-1, members="all")
  assert int(np.argmax(positives)) == 3 and float(positives[3]) > 3.0
  assert float(everything[3]) < 0.2


def test_multilabel_breakdown_errors_name_the_argument():
  logits, y = _case(6)
  with pytest.raises(ValueError, match="`num_classes` is 4"):
    jaxloss.class_breakdown(logits, y, 4, axis=-1)
  with pytest.raises(ValueError, match="`members`"):
    jaxloss.class_breakdown(logits, y, 5, axis=-1, members="some")
  with pytest.raises(ValueError, match="`ignore_index`"):
    jaxloss.class_breakdown(logits, y, 5, axis=-1, ignore_index=0)
  with pytest.raises(ValueError, match="`losses` has shape"):
    jaxloss.class_breakdown(logits[..., :2], y, 5, axis=-1)
