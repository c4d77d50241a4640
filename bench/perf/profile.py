"""Where a pre-training step's time goes, from ``torch.profiler`` (``bench perf --profile``).

For a few engine steps, on any device: operator calls per step and the operators that take the
most time (self time, the device's on CUDA). On CUDA also the figures that show a launch-bound or
sync-bound step, the usual failure of small ECG encoders on a big GPU:

* **kernel launches per step**: device kernels the step ran (each a launch from the host);
* **host syncs per step**: operations that made the host wait for the device (``.item()``,
  ``.cpu()``, boolean indexing, ``torch.isfinite(x)`` read on the host ...), counted with
  ``torch.cuda.set_sync_debug_mode("warn")``, which warns once per synchronising call;
* **device busy**: the summed kernel time over the wall time of the profiled steps; the rest is
  the GPU idle, waiting for the host.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

TOP_OPS = 12


def profile_steps(step: Callable[[int], Any], first: int, steps: int, device: torch.device) -> dict:
    """Run ``step(i)`` for ``i`` in ``first .. first + steps - 1`` under the profiler.

    Returns a JSON-able dict: ``ops_per_step`` (top-level operator calls), ``top_ops`` (the
    :data:`TOP_OPS` costliest operators: name, calls per step, self milliseconds per step, on
    the device for CUDA), and on CUDA ``kernels_per_step``, ``syncs_per_step`` and
    ``device_busy_fraction``.
    """
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    syncs = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.set_sync_debug_mode("warn")
        try:
            with profile(activities=activities) as prof:
                started = time.perf_counter()
                for i in range(first, first + steps):
                    step(i)
                if cuda:
                    torch.cuda.synchronize(device)
                wall = time.perf_counter() - started
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchronizing" in str(w.message) for w in caught)
    events = prof.events()
    out: dict[str, Any] = {
        "profiled_steps": steps,
        "ops_per_step": sum(1 for e in events if e.cpu_parent is None and _is_op(e.name)) / steps,
    }
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    averages = [a for a in prof.key_averages() if getattr(a, key, 0) > 0]
    averages.sort(key=lambda a: getattr(a, key), reverse=True)
    out["top_ops"] = [
        {"name": a.key, "calls": a.count / steps, "ms": getattr(a, key) / 1e3 / steps}
        for a in averages[:TOP_OPS]
    ]
    if cuda:
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.device_time for e in kernels) / 1e6  # microseconds -> seconds
        out["kernels_per_step"] = len(kernels) / steps
        out["syncs_per_step"] = syncs / steps
        out["device_busy_fraction"] = busy / wall if wall > 0 else None
    return out


def _is_op(name: str) -> bool:
    """A top-level event that is an operator (not the profiler's own or a Python annotation)."""
    return name.startswith(("aten::", "autograd::", "Optimizer.", "c10d::", "cuda"))
