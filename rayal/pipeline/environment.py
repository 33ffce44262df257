"""The numerical environment a run was made in, and whether the runs of a comparison share one.

A simulated AL run is deterministic on one machine: the same config and seed give the same
learning curve to the last digit, which is what lets ``rayal compare`` pair runs seed by seed
and read runs back instead of re-training them. Across machines it is not: oneDNN picks its
convolution kernels from the CPU's instruction set and the thread count, and a different
kernel rounds differently, so a 20-step training drifts (measured: a CamVid patch run's round-0
mIoU 0.1558 on one 2-core machine, 0.1518 on another, same code and packages). A paired
difference between runs made on two such machines mixes that drift into the comparison.

:func:`environment_record` records what decides the numbers: the numerical packages, the CPU
(model, instruction-set flags, caches, logical CPUs), torch's thread count and a *numerics
probe*, a hash of one fixed float32 convolution forward and backward (depthwise and dense
convolutions, batch norm, a matmul), which changes whenever the kernels that ran do.
:func:`environment_key` is a short hash of it; :func:`mixed_environments` groups runs by key.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path

# the packages whose versions change the numbers of a run (training, scoring, selection)
NUMERIC_PACKAGES = ("torch", "torchvision", "segmentation-models-pytorch", "timm", "numpy",
                    "scikit-image", "scikit-learn", "umap-learn", "ray")
# instruction-set flags that decide which kernels oneDNN and ATen run (Linux /proc/cpuinfo)
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni",
             "avx512_bf16", "amx_tile", "amx_bf16", "asimd", "sve")


def _cpuinfo() -> tuple[str, list[str]]:
    """(model name, the :data:`ISA_FLAGS` the CPU has) from ``/proc/cpuinfo``; elsewhere
    (macOS, Windows) the platform's processor string and no flags."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
        if model and flags:
            break
    return model, [f for f in ISA_FLAGS if f in flags]


def _caches() -> dict[str, str]:
    """{"L1d": "48K", "L2": "1024K", ...} of CPU 0 (Linux sysfs; {} elsewhere): oneDNN
    sizes its blocks from them."""
    out = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        out[f"L{level}{'d' if kind == 'Data' else 'i' if kind == 'Instruction' else ''}"] = size
    return out


def numerics_probe() -> str:
    """A 16-hex-digit hash of one fixed float32 computation in this process's torch (its
    threads, its kernels): a small network of a dense 3x3, a depthwise 3x3 and a 1x1
    convolution (32 -> 64 -> 32 channels) with batch norm, run forward and backward on a
    seeded 4x32x32x48 input, then a
    64x64 matmul. Two processes with the same hash ran the same kernels on these shapes."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 32, 32, 48, generator=gen)
    dense = torch.randn(64, 32, 3, 3, generator=gen, requires_grad=True)
    depthwise = torch.randn(64, 1, 3, 3, generator=gen, requires_grad=True)
    pointwise = torch.randn(32, 64, 1, 1, generator=gen, requires_grad=True)
    y = torch.nn.functional.conv2d(x, dense, padding=1)
    y = torch.nn.functional.batch_norm(y, None, None, training=True)
    y = torch.nn.functional.conv2d(torch.relu(y), depthwise, padding=1, groups=64)
    y = torch.nn.functional.conv2d(y, pointwise)
    loss = (y.flatten(1) @ torch.randn(y[0].numel(), 64, generator=gen)).square().mean()
    loss.backward()
    digest = hashlib.sha256()
    for t in (y.detach(), dense.grad, depthwise.grad, pointwise.grad):
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def environment_record() -> dict:
    """What decides a run's numbers in this process: ``packages`` ({name: version} of
    :data:`NUMERIC_PACKAGES` installed), ``python``, ``cpu`` (model, ISA flags, caches,
    logical CPUs), ``torch_threads``, ``cuda`` (device name or None) and ``numerics_probe``
    (:func:`numerics_probe`). Plain JSON; :func:`environment_key` hashes it."""
    import torch

    model, flags = _cpuinfo()
    packages = {}
    for name in NUMERIC_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"packages": packages, "python": platform.python_version(),
            "cpu": {"model": model, "isa": flags, "caches": _caches(),
                    "logical_cpus": os.cpu_count()},
            "torch_threads": torch.get_num_threads(), "cuda": cuda,
            "numerics_probe": numerics_probe()}


def environment_key(record: dict | None) -> str | None:
    """A 12-hex-digit hash of an :func:`environment_record` (None for a run made before runs
    recorded one): equal keys, same numerical environment."""
    if not record:
        return None
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def mixed_environments(records: dict[str, dict | None]) -> dict[str, list[str]]:
    """``{run: record}`` -> ``{environment key: [runs]}`` over the runs that recorded one,
    in first-seen order; more than one key means the runs were not all made in one
    numerical environment. Runs without a record are left out (``"unrecorded"`` lists them
    when there are any)."""
    groups: dict[str, list[str]] = {}
    for run, record in records.items():
        groups.setdefault(environment_key(record) or "unrecorded", []).append(run)
    return groups


def differing_fields(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The dotted fields in which two records differ (``cpu.isa``, ``packages.torch``, ...)."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differing_fields(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out


def mixed_note(groups: dict[str, list[str]], records: dict[str, dict]) -> str | None:
    """One paragraph naming the environments when runs were made in more than one (None when
    every run that recorded one shares it): per key its runs (the first 3) and the fields in
    which it differs from the first key's record."""
    keys = [k for k in groups if k != "unrecorded"]
    if len(keys) < 2:
        return None
    first = records[keys[0]]
    parts = []
    for key in keys:
        runs = groups[key]
        shown = ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
        fields = differing_fields(first, records[key])
        diff = "" if key == keys[0] else f"; differs in {', '.join(fields)}"
        parts.append(f"{key} ({len(runs)} runs: {shown}{diff})")
    return (f"the runs were made in {len(keys)} numerical environments: " + "; ".join(parts)
            + ". Runs are deterministic within one environment, not across them, so a paired "
            "difference across environments mixes their numerical drift into the comparison: "
            "re-run the arms in one environment to pair them (environments.json)")
