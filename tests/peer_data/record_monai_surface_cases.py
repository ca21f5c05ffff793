"""Records MONAI's surface metrics on random blobs: ``monai_surface_cases.json`` beside this file.

Not a test and not needed by CI (which has no torch): run it by hand, in a
virtualenv of its own, to refresh the recorded values::

  python3 -m venv /tmp/monai_venv
  /tmp/monai_venv/bin/pip install torch==2.13.0 monai==1.6.1 numpy scipy
  /tmp/monai_venv/bin/python tests/peer_data/record_monai_surface_cases.py

Recorded with MONAI 1.6.1, torch 2.13.0 (CPU) and scipy 1.17.1: MONAI's
``compute_hausdorff_distance``, ``compute_average_surface_distance`` and
``compute_surface_dice`` (``monai/metrics/{hausdorff_distance,surface_distance,
surface_dice}.py``, Euclidean distance, ``use_subvoxels=False``; on CPU MONAI
measures with a scipy KD-tree over the edge voxels).

Each input set is a batch of random blobs: class ids are the arg-max over
``C`` channels of Gaussian-smoothed noise (plus a bias per class, so classes
differ in size), drawn once from a seeded NumPy generator. The prediction is
the arg-max of the same fields plus a smaller independent smoothed noise, so
that it is close to the label with local errors. Some sets force empty
classes (absent from the label, the prediction or both) to record MONAI's
inf/NaN there. Ids are stored channels-last-free, as ``[B, *spatial]`` digit
strings (one character per voxel, row-major); MONAI receives
``one_hot(ids, C)`` moved to NCHW.
"""

import json
import pathlib
import warnings

import numpy as np

OUT = pathlib.Path(__file__).with_name("monai_surface_cases.json")

# (name, batch, spatial shape, classes, smoothing sigma, spacing, include_background, empties)
# empties: (image, class, "label" | "prediction" | "both") made absent after drawing.
SETS = [
    ("2d-a", 2, (40, 48), 3, 3.0, None, False, []),
    ("2d-b", 2, (36, 44), 4, 2.5, (0.8, 1.3), True, []),
    ("2d-c", 2, (32, 32), 3, 2.0, 2.0, False, []),
    ("2d-empty", 2, (24, 28), 4, 2.5, None, False,
     [(0, 1, "both"), (0, 2, "label"), (1, 3, "prediction"), (1, 1, "label")]),
    ("3d-a", 2, (20, 24, 16), 3, 2.5, None, False, []),
    ("3d-b", 1, (18, 16, 22), 3, 2.0, (1.5, 0.7, 1.0), True, []),
]

# Option combinations recorded for every set.
HAUSDORFF = [{"percentile": None, "directed": False}, {"percentile": None, "directed": True},
             {"percentile": 95, "directed": False}, {"percentile": 95, "directed": True},
             {"percentile": 50, "directed": False}]
AVERAGE = [{"symmetric": False}, {"symmetric": True}]


def _tolerances(n_class):
  return [1.0, 2.0, [0.5 + 0.75 * i for i in range(n_class)]]


def _smooth(rng, shape, sigma):
  from scipy import ndimage
  return ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")


def _draw(rng, batch, shape, n_class, sigma, empties):
  labels, preds = [], []
  for _ in range(batch):
    fields = np.stack([_smooth(rng, shape, sigma) for _ in range(n_class)])
    fields /= fields.std()
    fields += rng.uniform(-0.6, 0.6, (n_class,) + (1,) * len(shape))
    noise = np.stack([_smooth(rng, shape, sigma / 2) for _ in range(n_class)])
    noise *= 0.5 / noise.std()
    labels.append(np.argmax(fields, 0))
    preds.append(np.argmax(fields + noise, 0))
  labels, preds = np.stack(labels), np.stack(preds)
  for b, c, which in empties:  # the class's voxels go to class 0
    if which in ("label", "both"):
      labels[b][labels[b] == c] = 0
    if which in ("prediction", "both"):
      preds[b][preds[b] == c] = 0
  return preds, labels


def _encode(ids):
  return "".join(map(str, ids.reshape(-1).tolist()))


def _check_edges(monai_utils, preds, labels, n_class):
  """Our reading of MONAI's edges: the mask minus its cross-eroded self, outside = False."""
  from scipy import ndimage
  for b in range(preds.shape[0]):
    for c in range(n_class):
      p, y = preds[b] == c, labels[b] == c
      ep, ey = monai_utils.get_mask_edges(p, y, crop=True, always_return_as_numpy=True)
      for m, e in ((p, ep), (y, ey)):
        ours = m & ~ndimage.binary_erosion(m, border_value=0)
        if m.any():
          # MONAI crops to the union's bounding box (margin 1); compare the edge voxel count
          # and, after cropping ours the same way, the edge maps.
          assert e.sum() == ours.sum(), (b, c)
          box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2)
                      for i in np.nonzero(p | y))
          cropped = ours[box]
          if cropped.shape == e.shape:
            assert (cropped == e).all(), (b, c)


def main():
  import monai
  import scipy
  import torch
  from monai import metrics
  from monai.metrics import utils as monai_utils

  warnings.simplefilter("ignore")
  rng = np.random.default_rng(20260214)

  def nan_to_str(a):
    return [[None if np.isnan(v) else ("inf" if np.isinf(v) else float(v)) for v in row]
            for row in np.asarray(a, np.float64).tolist()]

  cases = []
  for name, batch, shape, n_class, sigma, spacing, include_bg, empties in SETS:
    preds, labels = _draw(rng, batch, shape, n_class, sigma, empties)
    _check_edges(monai_utils, preds, labels, n_class)

    eye = np.eye(n_class, dtype=np.float32)
    yp, yt = (torch.from_numpy(np.moveaxis(eye[ids], -1, 1)) for ids in (preds, labels))
    common = {"include_background": include_bg, "spacing": spacing}
    hd = [{"options": o,
           "monai": nan_to_str(metrics.compute_hausdorff_distance(yp, yt, **common, **o))}
          for o in HAUSDORFF]
    asd = [{"options": o,
            "monai": nan_to_str(metrics.compute_average_surface_distance(yp, yt, **common, **o))}
           for o in AVERAGE]
    n_out = n_class if include_bg else n_class - 1
    nsd = []
    for tol in _tolerances(n_out):
      thresholds = tol if isinstance(tol, list) else [tol] * n_out
      got = metrics.compute_surface_dice(yp, yt, thresholds, **common)
      nsd.append({"options": {"tolerance": tol}, "monai": nan_to_str(got)})
    cases.append({
        "id": name, "shape": [batch, *shape], "num_classes": n_class, "spacing": spacing,
        "include_background": include_bg, "empties": empties,
        "predictions": _encode(preds), "labels": _encode(labels),
        "hausdorff_distance": hd, "average_surface_distance": asd, "surface_dice": nsd,
    })
  data = {
      "peer": "MONAI", "monai_version": monai.__version__, "torch_version": torch.__version__,
      "scipy_version": scipy.__version__, "repository": "Project-MONAI/MONAI",
      "functions": ["monai.metrics.compute_hausdorff_distance",
                    "monai.metrics.compute_average_surface_distance",
                    "monai.metrics.compute_surface_dice"],
      "layout": "ids [B, *spatial] as row-major digit strings; MONAI got one_hot(ids, C) in "
                "NCHW[D]; results [B, C'] (C' = C - 1 without background); null = NaN, "
                "'inf' = inf; tolerance is MONAI's class_thresholds (a scalar: one per class)",
      "cases": cases,
  }
  OUT.write_text(json.dumps(data, separators=(",", ":")) + "\n")
  print(f"wrote {OUT} ({OUT.stat().st_size} bytes): {len(cases)} input sets")


if __name__ == "__main__":
  main()
