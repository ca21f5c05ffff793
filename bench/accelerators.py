"""Peak memory bandwidth of common accelerators, keyed on JAX's ``device_kind``.

On a GPU or TPU the bench reports each contender's achieved bandwidth (the
workload's minimal bytes ÷ its median time) and that as a fraction of the
device's peak from the table below; on any other device kind it says
"unknown device", and on CPU it reports no bandwidth at all.

Peaks are the vendors' public spec-sheet numbers, in GB/s (10^9 bytes/s):

* NVIDIA A100 datasheet (2021): 40 GB (SXM4 and PCIe) 1,555; 80 GB PCIe
  1,935; 80 GB SXM4 2,039.
* NVIDIA H100 datasheet: SXM5 3.35 TB/s; PCIe 2.0 TB/s; NVL 3.9 TB/s.
* NVIDIA H200 datasheet: SXM and NVL 4.8 TB/s.
* NVIDIA L4 datasheet: 300 GB/s.
* Google Cloud TPU system-architecture pages (cloud.google.com/tpu/docs/v4,
  /v5e, /v5p, /v6e), HBM bandwidth per chip: v4 1,200; v5e 819; v5p 2,765;
  v6e (Trillium) 1,640.

``device_kind`` strings seen from JAX: ``"NVIDIA A100-SXM4-40GB"``, ``"NVIDIA
A100-SXM4-80GB"``, ``"NVIDIA A100-PCIE-40GB"``, ``"NVIDIA A100 80GB PCIe"``,
``"NVIDIA H100 80GB HBM3"`` (SXM), ``"NVIDIA H100 PCIe"``, ``"NVIDIA H100
NVL"``, ``"NVIDIA H200"``, ``"NVIDIA L4"``; ``"TPU v4"``, ``"TPU v5 lite"``
(v5e), ``"TPU v5"`` or ``"TPU v5p"`` (v5p), ``"TPU v6 lite"`` (v6e); the
patterns below also take the marketing names (``"TPU v5e"``, ``"TPU v6e"``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

# (pattern on the lower-cased device_kind, short name, peak GB/s); the first match wins,
# so the specific variants come before the generic ones.
PEAKS: tuple[tuple[str, str, float], ...] = (
    (r"\ba100\b.*80\s*gb.*pcie|\ba100\b.*pcie.*80\s*gb", "A100 80GB PCIe", 1935.0),
    (r"\ba100\b.*80\s*gb", "A100 80GB SXM", 2039.0),
    (r"\ba100\b", "A100 40GB", 1555.0),
    (r"\bh100\b.*\bnvl\b", "H100 NVL", 3900.0),
    (r"\bh100\b.*pcie", "H100 PCIe", 2000.0),
    (r"\bh100\b", "H100 SXM", 3350.0),
    (r"\bh200\b", "H200", 4800.0),
    (r"\bl4\b", "L4", 300.0),
    (r"\btpu v4\b(?! lite)", "TPU v4", 1200.0),
    (r"\btpu v5 ?(lite|e)\b", "TPU v5e", 819.0),
    (r"\btpu v5p?$", "TPU v5p", 2765.0),
    (r"\btpu v6 ?(lite|e)\b", "TPU v6e", 1640.0),
)


@dataclasses.dataclass(frozen=True)
class Accelerator:
  """A GPU or TPU as the report names it; ``peak_gbps`` is None for an unknown kind."""

  platform: str
  device_kind: str
  name: str | None
  peak_gbps: float | None

  def describe(self) -> str:
    """One header line: the peak used for ``% peak``, or "unknown device"."""
    if self.peak_gbps is None:
      return (f"memory bandwidth: unknown device {self.device_kind!r} (no peak in "
              "bench/accelerators.py; GB/s shown, % peak not)")
    return (f"memory bandwidth: {self.name}, peak {self.peak_gbps:,.0f} GB/s "
            "(spec sheet; see bench/accelerators.py)")

  def fraction(self, gbps: float) -> float | None:
    """``gbps`` ÷ the peak, or None when the peak is unknown."""
    return None if self.peak_gbps is None else gbps / self.peak_gbps


def lookup(device_kind: str) -> tuple[str, float] | None:
  """``(short name, peak GB/s)`` of a ``device_kind``, or None when it is not in the table."""
  kind = " ".join(device_kind.lower().split())
  for pattern, name, peak in PEAKS:
    if re.search(pattern, kind):
      return name, peak
  return None


def accelerator(platform: str, device_kind: str) -> Accelerator | None:
  """The :class:`Accelerator` of a GPU/TPU device; None on CPU (no bandwidth reported)."""
  if platform.lower() == "cpu":
    return None
  found = lookup(device_kind)
  return Accelerator(platform, device_kind, *(found or (None, None)))


def of_device(device: Any) -> Accelerator | None:
  """:func:`accelerator` of a ``jax.Device`` (or anything with ``platform``/``device_kind``)."""
  return accelerator(str(device.platform), str(device.device_kind))
