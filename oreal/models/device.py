"""Device selection and mixed-precision helpers.

Policy weights stay in fp32 (the optimizer's master copy); matmuls run in bf16 under autocast.
On CPUs with AMX-bf16 (Sapphire Rapids and later) bf16 matmuls are ~3x faster than fp32, and on
CUDA bf16 is the usual training precision, so autocast is on by default on both.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["autocast_context", "autocast_dtype", "pick_device"]


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """Return ``preferred`` if given, else ``$OREAL_DEVICE``, else CUDA when present, else CPU."""
    if preferred is not None:
        return torch.device(preferred)
    env = os.environ.get("OREAL_DEVICE")
    if env:
        return torch.device(env)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def autocast_context(
    device: str | torch.device, enabled: bool = True, dtype: torch.dtype = torch.bfloat16
) -> Iterator[None]:
    """bf16 autocast on CPU or CUDA, a no-op elsewhere or when ``enabled`` is false.

    fp16 is deliberately not offered: it needs loss scaling, bf16 does not. On a CUDA device
    without bf16 support autocast is skipped (fp32 compute) rather than silently switching dtype.
    """
    if autocast_dtype(device, enabled, dtype) is None:
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
        yield


def autocast_dtype(
    device: str | torch.device, enabled: bool = True, dtype: torch.dtype = torch.bfloat16
) -> torch.dtype | None:
    """The dtype :func:`autocast_context` computes matmuls in with these arguments; None
    where it does not autocast (disabled, a device without bf16, not CPU or CUDA)."""
    device_type = torch.device(device).type
    usable = device_type == "cpu" or (
        device_type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    )
    return dtype if enabled and usable else None
