"""Records MONAI's shape-aware losses on random blobs: ``monai_shape_cases.json`` beside this file.

Not a test and not needed by CI (which has no torch): run it by hand, in a
virtualenv of its own, to refresh the recorded values::

  python3 -m venv /tmp/monai_venv
  /tmp/monai_venv/bin/pip install torch==2.13.0 monai==1.6.1 scipy numpy
  /tmp/monai_venv/bin/python tests/peer_data/record_monai_shape_cases.py

Recorded with MONAI 1.6.1, torch 2.13.0 (CPU), scipy 1.17.1, numpy 2.4.6 (the
versions are also written into the JSON). Peers: ``HausdorffDTLoss``,
``SoftclDiceLoss``, ``SoftDiceclDiceLoss``, ``BoundaryLoss`` and
``monai.losses.cldice.soft_skel``.

Inputs are random blobs drawn once from a seeded NumPy generator: per-class
Gaussian-smoothed noise, argmax for class ids (or thresholded per class for
multi-hot maps), and logits that agree with the labels up to smoothed noise.
They are rounded to 3 decimals before MONAI sees them, so the JSON holds them
exactly (as float32). Tensors are NCHW[D] nested lists; ``input`` is the
logits (or probabilities for ``activation: null``), ``target`` the class ids
``[B, 1, *spatial]`` (``to_onehot_y=True``) or one-hot / multi-hot maps;
``input_from`` names the input set whose logits an input set shares.
For a few cases the gradient w.r.t. the input is recorded too (``grad``).
"""

import json
import pathlib
import warnings

import numpy as np

OUT = pathlib.Path(__file__).with_name("monai_shape_cases.json")
RNG = np.random.default_rng(20240914)


def _smooth(shape, sigma):
  from scipy import ndimage
  return ndimage.gaussian_filter(RNG.standard_normal(shape), sigma=(0, 0) + (sigma,) *
                                 (len(shape) - 2))


def blobs(batch, classes, spatial, sigma, multi_hot=False):
  """``(logits [B, C, *spatial], ids [B, 1, *spatial] or multi-hot [B, C, *spatial])``."""
  field = _smooth((batch, classes) + spatial, sigma)
  if multi_hot:
    target = (field > 0.02).astype(np.float32)
    one_hot = target
  else:
    ids = field.argmax(1)
    target = ids[:, None].astype(np.int64)
    one_hot = np.moveaxis(np.eye(classes)[ids], -1, 1)
  noise = _smooth((batch, classes) + spatial, sigma / 2)
  logits = 3.0 * (one_hot - 0.5) + 25.0 * noise
  return np.round(logits, 3).astype(np.float32), target


def _tensor(torch, x):
  return torch.tensor(np.asarray(x))


def _values(x, digits=9):
  """float32 values as short decimals (9 significant digits round-trip float32)."""
  return json.loads(json.dumps(np.asarray(x, np.float32).tolist()),
                    parse_float=lambda s: float(f"{float(s):.{digits}g}"))


def record(torch, loss_cls, kwargs, x, target, grad=False):
  x_t = _tensor(torch, x).requires_grad_(grad)
  loss = loss_cls(**kwargs)(x_t, _tensor(torch, target))
  out = {"monai": _values(loss.detach().numpy())}
  if grad:
    (g,) = torch.autograd.grad(loss.sum(), x_t)
    out["grad"] = _values(g.numpy(), digits=7)
  return out


def main():
  import monai
  import scipy
  import torch
  from monai.losses import BoundaryLoss, HausdorffDTLoss, SoftclDiceLoss, SoftDiceclDiceLoss
  from monai.losses.cldice import soft_skel

  warnings.simplefilter("ignore")
  inputs = {}

  def add_input(name, x, target, input_from=None):
    inputs[name] = {"target": np.asarray(target).tolist(),
                    "target_dtype": str(np.asarray(target).dtype)}
    if input_from is None:
      inputs[name]["input"] = x.tolist()
    else:
      inputs[name]["input_from"] = input_from

  # 2-D: B=2, C=3, 16x14 (non-square). Image 1 has no pixel of class 2, and a
  # variant ("2d_full", same logits) whose image 1 is entirely class 0 (a full class).
  x, ids = blobs(2, 3, (16, 14), 2.0)
  ids[1][ids[1] == 2] = 1
  add_input("2d", x, ids)
  full = ids.copy()
  full[1] = 0
  add_input("2d_full", x, full, input_from="2d")
  xm, mh = blobs(2, 3, (12, 12), 1.5, multi_hot=True)
  mh[1, 2] = 0.0  # an empty channel
  add_input("2d_multi_hot", xm, mh)
  x3, ids3 = blobs(2, 3, (8, 7, 6), 1.2)
  add_input("3d", x3, ids3)
  xm3, mh3 = blobs(2, 2, (6, 6, 6), 1.2, multi_hot=True)
  add_input("3d_multi_hot", xm3, mh3)
  probs = torch.softmax(torch.tensor(x), 1).numpy().round(4).astype(np.float32)
  add_input("2d_probs", probs, ids)

  one_hot = {"to_onehot_y": True}
  hausdorff = [
      ("2d", {**one_hot, "softmax": True}, True),  # MONAI's defaults: no background
      ("2d", {**one_hot, "softmax": True, "include_background": True, "reduction": "none"},
       False),
      ("2d", {**one_hot, "softmax": True, "batch": True, "reduction": "sum"}, False),
      ("2d_full", {**one_hot, "softmax": True, "include_background": True,
                   "reduction": "none"}, False),
      ("2d_probs", {**one_hot, "include_background": True}, False),
      ("2d_multi_hot", {"sigmoid": True, "include_background": True, "reduction": "none"},
       True),
      ("2d_multi_hot", {"sigmoid": True, "include_background": True, "alpha": 1.5,
                        "batch": True, "reduction": "none"}, False),
      ("3d", {**one_hot, "softmax": True, "include_background": True}, False),
      ("3d_multi_hot", {"sigmoid": True, "include_background": True, "batch": True,
                        "reduction": "none"}, False),
  ]
  cl_dice = [
      ("2d", {**one_hot, "softmax": True}, True),
      ("2d", {**one_hot, "softmax": True, "include_background": False, "reduction": "none"},
       False),
      ("2d", {**one_hot, "softmax": True, "iter_": 5, "smooth_nr": 1e-3, "smooth_dr": 1e-3,
              "smooth": 0.01, "reduction": "sum"}, False),
      ("2d_full", {**one_hot, "softmax": True, "reduction": "none"}, False),
      ("2d_probs", {**one_hot, "iter_": 0}, False),
      ("2d_multi_hot", {"sigmoid": True, "reduction": "none"}, True),
      ("3d", {**one_hot, "softmax": True, "include_background": False}, False),
      ("3d_multi_hot", {"sigmoid": True, "iter_": 2, "reduction": "none"}, False),
  ]
  dice_cl_dice = [
      ("2d", {**one_hot, "softmax": True}, True),
      ("2d", {**one_hot, "softmax": True, "alpha": 0.3, "include_background": False,
              "reduction": "sum"}, False),
      ("3d_multi_hot", {"sigmoid": True, "alpha": 0.8, "iter_": 2}, False),
  ]
  boundary = [
      ("2d", {**one_hot, "softmax": True, "reduction": "none"}, True),
      ("2d", {**one_hot, "softmax": True, "include_background": False}, False),
      ("2d_full", {**one_hot, "softmax": True, "reduction": "none"}, False),
      ("2d_multi_hot", {"sigmoid": True}, False),
      ("3d", {**one_hot, "softmax": True}, False),
  ]
  cases = []
  for loss_cls, table in ((HausdorffDTLoss, hausdorff), (SoftclDiceLoss, cl_dice),
                          (SoftDiceclDiceLoss, dice_cl_dice), (BoundaryLoss, boundary)):
    for name, kwargs, grad in table:
      data = inputs[name]
      target = np.asarray(data["target"], data["target_dtype"])
      x = np.asarray(inputs[data.get("input_from", name)]["input"], np.float32)
      cases.append({"loss": loss_cls.__name__, "inputs": name, "kwargs": kwargs,
                    **record(torch, loss_cls, kwargs, x, target, grad)})
  skeletons = {}
  for name, iters in (("2d_probs", 3), ("3d", 2)):
    x = torch.tensor(np.asarray(inputs[name]["input"], np.float32))
    if name == "3d":
      x = torch.sigmoid(x)
    skeletons[name] = {"iter_": iters, "sigmoid": name == "3d",
                       "monai": _values(soft_skel(x, iters).numpy())}
  data = {
      "peer": "MONAI", "monai_version": monai.__version__, "torch_version": torch.__version__,
      "scipy_version": scipy.__version__, "numpy_version": np.__version__,
      "layout": "NCHW[D] nested lists; 'monai' is the value MONAI computes, 'grad' its "
                "gradient w.r.t. 'input' (of the loss's sum)",
      "inputs": inputs, "cases": cases, "soft_skel": skeletons,
  }
  OUT.write_text(json.dumps(data, separators=(",", ":")) + "\n")
  print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB): {len(cases)} loss cases, "
        f"{len(skeletons)} skeletons")


if __name__ == "__main__":
  main()
