"""Records MONAI's own loss test cases as data: ``monai_cases.json`` beside this file.

Not a test and not needed by CI (which has no torch): run it by hand, in a
virtualenv of its own, to refresh the recorded values::

  python3 -m venv /tmp/monai_venv
  /tmp/monai_venv/bin/pip install torch==2.13.0 monai==1.6.1 numpy
  /tmp/monai_venv/bin/python tests/peer_data/record_monai_cases.py

The tables below transcribe, as data, the ``TEST_CASES`` of MONAI's
``tests/losses/test_{dice,generalized_dice,tversky,focal,dice_ce}_loss.py`` and
the ignore-index tests of ``tests/losses/test_dice_loss.py`` and
``tests/losses/test_ignore_index_losses.py`` (repository Project-MONAI/MONAI,
file versions named in ``SOURCES``). Tensors are NCHW nested lists; the
``other_act`` callables are named by a string. Each case keeps MONAI's table
value (``expected``) and the value MONAI 1.6.1 computes for it here
(``monai``); the script fails if the two disagree beyond the table's tolerance.
The ignore-index tests draw random inputs in MONAI; here they are drawn once
from a seeded NumPy generator and stored.
"""

import json
import pathlib
import warnings

import numpy as np

OUT = pathlib.Path(__file__).with_name("monai_cases.json")

SOURCES = {
    "DiceLoss": ("tests/losses/test_dice_loss.py", "01c9ad1ad0e814355fe0f338e3160eb22d17d728"),
    "GeneralizedDiceLoss": ("tests/losses/test_generalized_dice_loss.py",
                            "070fb8808e6c2434abd9436d51eec92d97219a29"),
    "TverskyLoss": ("tests/losses/test_tversky_loss.py",
                    "021094ff2b36776b2a32a97612a2fe11ad5f4cdf"),
    "FocalLoss": ("tests/losses/test_focal_loss.py", "1f37d0dfbb9e9485182d519668e675202e159c5f"),
    "DiceCELoss": ("tests/losses/test_dice_ce_loss.py", "dd3ca76e2cf2b05e2af2ca98256634bfe2ba99ea"),
    "ignore_index": ("tests/losses/test_ignore_index_losses.py",
                     "1a85bb07fb0d13f09e90c7d80169d2924d531b83"),
}
TOLERANCE = {"DiceLoss": (1e-5, 0.0), "GeneralizedDiceLoss": (1e-5, 0.0),
             "TverskyLoss": (1e-4, 0.0), "FocalLoss": (1e-4, 1e-4), "DiceCELoss": (1e-4, 1e-4)}

# Inputs shared by many rows of MONAI's tables.
X1 = [[[[1.0, -1.0], [-1.0, 1.0]]]]                                   # (1, 1, 2, 2)
T1 = [[[[1.0, 0.0], [1.0, 1.0]]]]
X2 = [[[[1.0, -1.0], [-1.0, 1.0]]], [[[1.0, -1.0], [-1.0, 1.0]]]]      # (2, 1, 2, 2)
X2Z = [[[[1.0, -0.0], [-1.0, 1.0]]], [[[1.0, -1.0], [-1.0, 1.0]]]]
T2 = [[[[1.0, 1.0], [1.0, 1.0]]], [[[1.0, 0.0], [1.0, 0.0]]]]
SOFT = [[[[0.3, 0.4], [0.7, 0.9]]], [[[1.0, 0.1], [0.5, 0.3]]]]        # soft targets = inputs
XB = [[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]]   # (2, 2, 3)
TB = [[[0.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]]]                               # (2, 1, 3)
XC = [[[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]
TC = [[[1.0, 0.0, 0.0]], [[1.0, 1.0, 0.0]]]
XD = [[[100.0, 100.0, 0.0], [0.0, 0.0, 1.0]], [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]]

S4 = {"smooth_nr": 1e-4, "smooth_dr": 1e-4}
S6 = {"smooth_nr": 1e-6, "smooth_dr": 1e-6}
IB = {"include_background": True}

# (constructor kwargs, input, target, MONAI's expected value)
DICE = [
    ({**IB, "sigmoid": True, **S6}, X1, T1, 0.307576),
    ({**IB, "sigmoid": True, **S4}, X2, T2, 0.416657),
    ({**IB, **S4, "soft_label": True}, SOFT, SOFT, 0.0),
    ({**IB, **S4, "soft_label": False}, SOFT, SOFT, 0.307773),
    ({"include_background": False, "to_onehot_y": True, "smooth_nr": 0, "smooth_dr": 0},
     XB, TB, 0.0),
    ({**IB, "to_onehot_y": True, "sigmoid": True, **S4}, XC, TC, 0.435050),
    ({**IB, "to_onehot_y": True, "sigmoid": True, "reduction": "none", **S4}, XC, TC,
     [[[0.296529], [0.415136]], [[0.599976], [0.428559]]]),
    ({**IB, "to_onehot_y": True, "softmax": True, **S4}, XC, TC, 0.383713),
    ({**IB, "to_onehot_y": True, "softmax": True, "reduction": "sum", **S4}, XC, TC, 1.534853),
    ({**IB, "sigmoid": True, "squared_pred": True}, X1, T1, 0.178337),
    ({**IB, "sigmoid": True, "jaccard": True}, X1, T1, 0.470451),
    ({**IB, "other_act": "tanh", **S4}, X2, T2, 0.999963),
    ({**IB, "to_onehot_y": True, "other_act": "log_softmax", **S4}, XC, TC, -8.522593),
    ({**IB, "other_act": "tanh", **S4, "batch": True}, X2Z, T2, 0.774718),
    ({**IB, "other_act": "tanh", "smooth_nr": 0, "smooth_dr": 1e-4, "batch": True}, X2Z, T2,
     0.774733),
    ({**IB, "other_act": "tanh", "smooth_nr": 0, "smooth_dr": 1e-4, "batch": False}, X2Z, T2,
     0.840058),
    ({**IB, "to_onehot_y": True, "other_act": "log_softmax", **S4, "weight": [0, 1]}, XC, TC,
     -8.268515),
]

GDL = [
    ({**IB, "sigmoid": True, **S6}, X1, T1, 0.307576),
    ({**IB, "sigmoid": True, **S4}, X2, T2, 0.416597),
    ({**IB, **S4, "soft_label": True}, SOFT, SOFT, 0.0),
    ({**IB, **S4, "soft_label": False}, SOFT, SOFT, 0.307748),
    ({"include_background": False, "to_onehot_y": True, "smooth_nr": 0.0, "smooth_dr": 0.0},
     XB, TB, 0.0),
    ({**IB, "to_onehot_y": True, "sigmoid": True, **S4}, XC, TC, 0.469964),
    ({**IB, "to_onehot_y": True, "softmax": True, **S4}, XC, TC, 0.414507),
    ({**IB, "to_onehot_y": True, "softmax": True, "reduction": "sum", **S4}, XC, TC, 0.829015),
    ({**IB, "to_onehot_y": True, "softmax": True, "reduction": "none", **S4}, XC, TC,
     [[[0.273476]], [[0.555539]]]),
    ({"include_background": False, "to_onehot_y": True, "smooth_nr": 1e-8, "smooth_dr": 1e-8},
     XB, [[[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]], 0.0),
    ({**IB, "to_onehot_y": True, "softmax": True, "w_type": "simple", "smooth_nr": 0,
      "smooth_dr": 0},
     [[[0.0, 10.0, 10.0, 10.0], [10.0, 0.0, 0.0, 0.0]]], [[[1, 1, 0, 0]]], 0.250023),
    ({**IB, "other_act": "tanh", **S4}, X2, T2, 0.99970),
    ({**IB, "to_onehot_y": True, "other_act": "log_softmax", **S4}, XC, TC, -0.097833),
]

TVERSKY = [
    ({**IB, "sigmoid": True, **S6}, X1, T1, 0.307576),
    ({**IB, "sigmoid": True, **S4}, X2, T2, 0.416657),
    ({**IB, **S4, "soft_label": True}, SOFT, SOFT, 0.0),
    ({**IB, **S4, "soft_label": False}, SOFT, SOFT, 0.307773),
    ({"include_background": False, "to_onehot_y": True, "smooth_nr": 0, "smooth_dr": 0},
     XB, TB, 0.0),
    ({"include_background": False, "to_onehot_y": True, "smooth_nr": 0, "smooth_dr": 1e-3},
     XB, TB, 0.000999),
    ({**IB, "to_onehot_y": True, "sigmoid": True, **S4}, XC, TC, 0.435050),
    ({**IB, "to_onehot_y": True, "sigmoid": True, "batch": True}, XC, TC, 0.422979),
    ({**IB, "to_onehot_y": True, "sigmoid": True, "reduction": "sum", **S4}, XC, TC, 1.74013),
    ({**IB, "to_onehot_y": True, "softmax": True, **S4}, XC, TC, 0.383713),
    ({**IB, "to_onehot_y": True, "softmax": True, "reduction": "none", **S4}, XC, TC,
     [[0.210961, 0.295339], [0.599952, 0.428547]]),
    ({**IB, "sigmoid": True, "alpha": 0.3, "beta": 0.7, **S6}, X1, T1, 0.3589),
    ({**IB, "sigmoid": True, "alpha": 0.7, "beta": 0.3, **S6}, X1, T1, 0.247366),
    ({**IB, "other_act": "tanh", **S4}, X2, T2, 0.999963),
    ({**IB, "other_act": "tanh", "smooth_nr": 0, "smooth_dr": 1e-3, "batch": True}, X2, T2,
     0.999963),
    ({**IB, "to_onehot_y": True, "other_act": "log_softmax", **S4}, XC, TC, -8.533317),
]

XF = [[[[1.0, 1.0], [0.5, 0.0]], [[1.0, 1.0], [0.5, 0.0]], [[1.0, 1.0], [0.5, 0.0]]]]  # (1,3,2,2)
TF = [[[[0, 1], [2, 0]]]]                                                             # (1,1,2,2)
TF_ONEHOT = [[[[1, 0], [0, 1]], [[0, 1], [0, 0]], [[0, 0], [1, 0]]]]
FOCAL = [
    ({"to_onehot_y": True}, XF, TF, 0.34959),
    ({"to_onehot_y": False}, XF, TF_ONEHOT, 0.34959),
    ({"to_onehot_y": True, "include_background": False}, XF, TF, 0.36498),
    ({"to_onehot_y": True, "alpha": 0.8}, XF, TF, 0.08423),
    ({"to_onehot_y": True, "reduction": "none"}, XF, TF,
     [[[[0.02266, 0.70187], [0.37741, 0.17329]],
       [[0.70187, 0.02266], [0.37741, 0.17329]],
       [[0.70187, 0.70187], [0.06757, 0.17329]]]]),
    ({"to_onehot_y": True, "weight": [0.5, 0.1, 0.2], "reduction": "none"}, XF, TF,
     [[[[0.01133, 0.35093], [0.18871, 0.08664]],
       [[0.07019, 0.00227], [0.03774, 0.01733]],
       [[0.14037, 0.14037], [0.01352, 0.03466]]]]),
    ({"to_onehot_y": True, "use_softmax": True}, XF, TF, 0.16276),
    ({"to_onehot_y": True, "alpha": 0.8, "use_softmax": True}, XF, TF, 0.08138),
]

DICE_CE = [
    ({"to_onehot_y": True}, XB, TB, 0.3133),
    ({"to_onehot_y": False}, XB, XB, 0.3133),
    ({"to_onehot_y": False}, XB, "uint8:XB", 0.3133),
    ({"include_background": False, "to_onehot_y": True, "weight": [1.0, 1.0]}, XD, TB, 0.2088),
    ({"include_background": False, "to_onehot_y": True, "weight": [1.0, 1.0],
      "lambda_dice": 1.0, "lambda_ce": 2.0}, XD, TB, 0.4176),
    ({"include_background": False, "to_onehot_y": True, "weight": [0.0, 1.0]}, XD, TB, 0.3133),
    ({"weight": [0.5], "sigmoid": True}, [[[0.8, 0.6, 0.0]], [[0.0, 0.0, 0.9]]], TB, 1.445239),
]

TABLES = {"DiceLoss": DICE, "GeneralizedDiceLoss": GDL, "TverskyLoss": TVERSKY,
          "FocalLoss": FOCAL, "DiceCELoss": DICE_CE}


def _tensor(torch, value, dtype):
  return torch.tensor(np.asarray(value), dtype=getattr(torch, dtype))


def _build(torch, monai_losses, name, kwargs):
  kw = dict(kwargs)
  if kw.get("other_act") == "tanh":
    kw["other_act"] = torch.tanh
  elif kw.get("other_act") == "log_softmax":
    kw["other_act"] = lambda x: torch.log_softmax(x, dim=1)
  if "weight" in kw and name in ("FocalLoss", "DiceCELoss"):
    kw["weight"] = torch.tensor(kw["weight"])
  return getattr(monai_losses, name)(**kw)


def table_cases(torch, monai_losses):
  cases = []
  for name, table in TABLES.items():
    source, commit = SOURCES[name]
    rtol, atol = TOLERANCE[name]
    for i, (kwargs, x, t, expected) in enumerate(table):
      if isinstance(t, str):               # a uint8 copy of a float table
        t, t_dtype = XB, "uint8"
      elif name == "FocalLoss" or (name == "GeneralizedDiceLoss" and i == 10):
        t_dtype = "int64"
      else:
        t_dtype = "float32"
      loss = _build(torch, monai_losses, name, kwargs)
      got = loss(_tensor(torch, x, "float32"), _tensor(torch, t, t_dtype)).detach().numpy()
      np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=f"{name}[{i}]")
      cases.append({
          "id": f"{name}-{i:02d}", "loss": name, "source": source, "source_commit": commit,
          "table_index": i, "kwargs": kwargs, "input": x, "target": t, "target_dtype": t_dtype,
          "expected": expected, "monai": got.tolist(), "rtol": rtol, "atol": atol,
      })
  return cases


def ignore_cases(torch, monai_losses):
  """MONAI's ignore-index tests, with their random inputs drawn once here."""
  rng = np.random.default_rng(20260117)
  dice_src = SOURCES["DiceLoss"]
  ign_src = SOURCES["ignore_index"]
  cases = []

  def run(name, kwargs, x, t, t_dtype):
    loss = _build(torch, monai_losses, name, kwargs)
    return loss(_tensor(torch, x, "float32"), _tensor(torch, t, t_dtype)).detach().numpy()

  def add(test, name, kwargs, source, inputs, t, t_dtype, **extra):
    values = [run(name, kwargs, x, t, t_dtype).tolist() for x in inputs]
    cases.append({"id": f"{test}-{name}-{len(cases):02d}", "test": test, "loss": name,
                  "source": source[0], "source_commit": source[1], "kwargs": kwargs,
                  "inputs": inputs, "target": t, "target_dtype": t_dtype, "monai": values,
                  **extra})

  # test_dice_loss.py, TestDiceLossIgnoreIndex. MONAI's test passes a (1, 2, 2)
  # target although its comment says (1, 1, 2, 2); MONAI 1.6.1 rejects the
  # former, so the latter is recorded.
  x = np.log(np.array([[[[0.8, 0.1], [0.1, 0.1]], [[0.1, 0.8], [0.1, 0.1]],
                        [[0.1, 0.1], [0.8, 0.8]]]], np.float32)).tolist()
  t = [[[[0, 1], [2, 2]]]]
  kw = {"to_onehot_y": True, "softmax": True, "ignore_index": 2, "reduction": "mean"}
  crop = run("DiceLoss", {"to_onehot_y": True, "softmax": True, "reduction": "mean"},
             np.asarray(x)[:, :, :1].tolist(), [[[[0, 1]]]], "int64")
  add("ignore_index_index_target", "DiceLoss", kw, dice_src, [x], t, "int64",
      monai_crop=crop.tolist())

  x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
  t = rng.integers(0, 4, (2, 1, 3, 3))
  onehot = np.moveaxis(np.eye(4, dtype=np.float32)[t[:, 0]], -1, 1)
  from_index = run("DiceLoss", {"to_onehot_y": True, "softmax": True, "ignore_index": 1},
                   x.tolist(), t.tolist(), "int64")
  add("ignore_index_one_hot_target", "DiceLoss", {"softmax": True, "ignore_index": 1}, dice_src,
      [x.tolist()], onehot.tolist(), "float32", monai_from_index=from_index.tolist(),
      index_target=t.tolist())

  x = torch.tensor(rng.standard_normal((1, 3, 4, 4)).astype(np.float32), requires_grad=True)
  t = [[[[0, 1, 0, 1], [1, 0, 1, 0], [2, 2, 2, 2], [2, 2, 2, 2]]]]
  kw = {"to_onehot_y": True, "softmax": True, "ignore_index": 2}
  loss = _build(torch, monai_losses, "DiceLoss", kw)(x, _tensor(torch, t, "int64"))
  loss.backward()
  assert bool((x.grad[:, :, 2:] == 0).all())
  add("gradients_ignored", "DiceLoss", kw, dice_src, [x.detach().numpy().tolist()], t, "int64",
      monai_grad=x.grad.numpy().tolist())

  # test_ignore_index_losses.py (AsymmetricUnifiedFocalLoss is not in jaxloss).
  binary = [("DiceLoss", {"sigmoid": True}), ("FocalLoss", {"use_softmax": False}),
            ("TverskyLoss", {"sigmoid": True})]
  for name, kw in binary:
    base = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    alt = base.copy()
    alt[0, 0, 2:, :] += 5.0
    t = [[[[1, 0, 1, 0], [0, 1, 0, 1], [255] * 4, [255] * 4]]]
    add("loss_ignore_consistency", name, {**kw, "ignore_index": 255}, ign_src,
        [base.tolist(), alt.tolist()], t, "float32")
  for name, kw in binary:
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    t = rng.integers(0, 2, (1, 1, 4, 4)).astype(np.float32)
    add("no_ignore_behavior", name, {**kw, "ignore_index": None}, ign_src, [x.tolist()],
        t.tolist(), "float32")
  class_index = [("DiceLoss", {"softmax": True, "to_onehot_y": True}),
                 ("FocalLoss", {"use_softmax": True, "to_onehot_y": True}),
                 ("TverskyLoss", {"softmax": True, "to_onehot_y": True})]
  for name, kw in class_index:
    for ignore in (0, 1):
      rows = slice(0, 2) if ignore == 0 else slice(2, 4)
      base = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
      alt = base.copy()
      alt[:, ignore, rows, :] += 5.0
      t = np.zeros((1, 1, 4, 4), np.int64)
      t[:, 0, 2:, :] = 1
      add("loss_ignore_class_index", name, {**kw, "ignore_index": ignore}, ign_src,
          [base.tolist(), alt.tolist()], t.tolist(), "int64")
  for name, kw in [("DiceLoss", {"softmax": True}), ("FocalLoss", {"use_softmax": True}),
                   ("TverskyLoss", {"softmax": True})]:
    base = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    alt = base.copy()
    alt[:, 1, 2:, :] += 5.0
    t = [[[[1, 0, 1, 0], [0, 1, 0, 1], [255] * 4, [255] * 4]]]
    add("loss_ignore_sentinel_onehot", name, {**kw, "ignore_index": 255, "to_onehot_y": True},
        ign_src, [base.tolist(), alt.tolist()], t, "int64")
  add("loss_ignore_zero_contribution", "FocalLoss",
      {"ignore_index": 255, "use_softmax": False, "reduction": "none", "to_onehot_y": True},
      ign_src, [np.zeros((1, 3, 2, 4), np.float32).tolist()],
      [[[[255, 0, 1, 0], [1, 255, 0, 1]]]], "int64")
  for name, kw in binary:
    t = [[[[1, 0, 255, 255], [0, 1, 255, 255], [0, 1, 255, 255], [0, 1, 255, 255]]]]
    base = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    alt = base.copy()
    alt[:, :, :, 2:] += 10.0
    add("loss_ignore_masked_mean", name, {**kw, "ignore_index": 255}, ign_src,
        [base.tolist(), alt.tolist()], t, "float32")
  return cases


def input_warning_cases(torch, monai_losses):
  """``test_input_warnings``: one channel, where MONAI warns and ignores the option."""
  cases = []
  for name in ("DiceLoss", "GeneralizedDiceLoss", "TverskyLoss"):
    source, commit = SOURCES[name]
    for kw in ({"include_background": False}, {"softmax": True}, {"to_onehot_y": True}):
      x = t = np.ones((1, 1, 3), np.float32).tolist()
      with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = getattr(monai_losses, name)(**kw)(_tensor(torch, x, "float32"),
                                                 _tensor(torch, t, "float32"))
      assert caught, (name, kw)
      cases.append({"id": f"input_warnings-{name}-{next(iter(kw))}", "loss": name,
                    "source": source, "source_commit": commit, "kwargs": kw, "input": x,
                    "target": t, "target_dtype": "float32", "monai": float(got),
                    "monai_warning": str(caught[0].message)})
  return cases


def main():
  import monai
  import torch
  from monai import losses as monai_losses

  warnings.simplefilter("ignore")
  torch.manual_seed(0)
  data = {
      "peer": "MONAI", "monai_version": monai.__version__, "torch_version": torch.__version__,
      "repository": "Project-MONAI/MONAI",
      "layout": "NCHW nested lists; 'expected' is MONAI's table value, 'monai' the value "
                "computed by the MONAI version above",
      "sources": {k: {"path": v[0], "commit": v[1]} for k, v in SOURCES.items()},
      "cases": table_cases(torch, monai_losses),
      "ignore_index_cases": ignore_cases(torch, monai_losses),
      "input_warning_cases": input_warning_cases(torch, monai_losses),
  }
  OUT.write_text(json.dumps(data, indent=1) + "\n")
  print(f"wrote {OUT}: {len(data['cases'])} table cases, "
        f"{len(data['ignore_index_cases'])} ignore-index cases, "
        f"{len(data['input_warning_cases'])} single-channel warning cases")


if __name__ == "__main__":
  main()
