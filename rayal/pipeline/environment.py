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
:func:`environment_key` hashes the part that decides the numbers (:data:`KEY_FIELDS`);
:func:`mixed_environments` groups runs by key.

The record is taken in the process that drives the run, with the training's thread count
(``train.torch_threads``; training in local mode runs there). Scoring actors take their threads
from the config (``ray.cpus_per_actor``, ``ray.torch_threads``), the same for every run of a
config; Ray Train workers or actors on *other* nodes of a cluster are not probed.
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
                    "scikit-image", "scikit-learn", "umap-learn")
# the fields of a record that decide the numbers, hence the key; the rest (python, ray, CPU
# model, caches, logical CPUs) is recorded to tell two environments apart when keys differ
KEY_FIELDS = ("packages", "cpu.isa", "torch_threads", "cuda", "numerics_probe")
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


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment_record(torch_threads: int | None = None) -> dict:
    """What decides a run's numbers: ``packages`` ({name: version} of :data:`NUMERIC_PACKAGES`
    installed), ``python``, ``ray``, ``cpu`` (model, ISA flags, caches, logical CPUs),
    ``torch_threads`` (``torch_threads`` when given: the thread count training will set, else
    this process's), ``cuda`` (device name or None) and ``numerics_probe`` (:func:`numerics_probe`
    run with that thread count). Plain JSON; :func:`environment_key` hashes it."""
    import torch

    model, flags = _cpuinfo()
    versions = {name: _version(name) for name in NUMERIC_PACKAGES}
    packages = {name: v for name, v in versions.items() if v is not None}
    ray_version = _version("ray")
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    before = torch.get_num_threads()
    threads = torch_threads or before
    try:
        torch.set_num_threads(threads)
        probe = numerics_probe()
    finally:
        torch.set_num_threads(before)
    return {"packages": packages, "python": platform.python_version(), "ray": ray_version,
            "cpu": {"model": model, "isa": flags, "caches": _caches(),
                    "logical_cpus": os.cpu_count()},
            "torch_threads": threads, "cuda": cuda, "numerics_probe": probe}


def _key_part(record: dict) -> dict:
    """The :data:`KEY_FIELDS` of a record, dotted names as keys."""
    out = {}
    for field in KEY_FIELDS:
        value = record
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out[field] = value
    return out


def environment_key(record: dict | None) -> str | None:
    """A 12-hex-digit hash of a record's :data:`KEY_FIELDS` (None for a run made before runs
    recorded one): equal keys, same numerical environment. A run resumed across environments
    (``{"segments": [...]}``, :func:`rayal.pipeline.runtime.run_environment`) hashes its
    segments' keys in order, so it matches no run made in one of them alone."""
    if not record:
        return None
    if "segments" in record:
        part = {"segments": [environment_key(r) for r in record["segments"]]}
    else:
        part = _key_part(record)
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:12]


def mixed_environments(records: dict[str, dict | None]) -> dict[str, list[str]]:
    """``{run: record}`` -> ``{environment key: [runs]}`` in first-seen order; more than one
    key means the runs were not all made in one numerical environment. Runs without a record
    are grouped under ``"unrecorded"``."""
    groups: dict[str, list[str]] = {}
    for run, record in records.items():
        groups.setdefault(environment_key(record) or "unrecorded", []).append(run)
    return groups


def _shown(value) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def differing_fields(a: dict, b: dict) -> list[str]:
    """How two records differ in the fields that decide the numbers, one ``"field a -> b"``
    each (``"torch_threads 2 -> 1"``; ISA flags as ``"cpu.isa -avx512f"`` / ``+...``;
    a run resumed across environments as ``"resumed in N environments"``)."""
    if "segments" in a or "segments" in b:
        n = [len(r.get("segments", [r])) for r in (a, b)]
        return [f"resumed in {n[0]} -> {n[1]} environments"]
    ka, kb = _key_part(a), _key_part(b)
    out = []
    for field in KEY_FIELDS:
        va, vb = ka[field], kb[field]
        if va == vb:
            continue
        if field == "cpu.isa":
            gone, new = sorted(set(va or []) - set(vb or [])), sorted(set(vb or []) - set(va or []))
            out.append("cpu.isa " + " ".join([f"-{f}" for f in gone] + [f"+{f}" for f in new]))
        elif field == "packages":
            names = sorted(set(va or {}) | set(vb or {}))
            out += [f"{n} {(va or {}).get(n)} -> {(vb or {}).get(n)}" for n in names
                    if (va or {}).get(n) != (vb or {}).get(n)]
        else:
            out.append(f"{field} {_shown(va)} -> {_shown(vb)}")
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def mixed_note(groups: dict[str, list[str]], records: dict[str, dict]) -> str | None:
    """One paragraph when runs were made in more than one numerical environment, or some
    recorded none beside others that did (None when every run shares one, or none recorded
    any): per key its runs (the first 3) and how it differs from the first key's record."""
    keys = [k for k in groups if k != "unrecorded"]
    unrecorded = groups.get("unrecorded", [])
    if len(keys) < 2 and not (keys and unrecorded):
        return None
    parts = []
    for key in keys:
        runs = groups[key]
        shown = ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
        diff = ("" if key == keys[0] else
                f"; differs in {', '.join(differing_fields(records[keys[0]], records[key]))}")
        parts.append(f"{key} ({_count(len(runs), 'run')}: {shown}{diff})")
    text = (f"the runs were made in {_count(len(keys), 'numerical environment')}: "
            + "; ".join(parts))
    if unrecorded:
        text += (f"; {_count(len(unrecorded), 'run')} recorded none (made before rayal recorded it: "
                 f"{', '.join(unrecorded[:3])}), whether they share one is unknown")
    return (text + ". Runs are deterministic within one environment, not across them, so a "
            "paired difference across environments mixes their numerical drift into the "
            "comparison: re-run the arms in one environment to pair them (finished runs are "
            "read back, so move a run's folder away to re-run it here; environments.json)")


def pairs_match(a: dict[int, set], b: dict[int, set], seeds) -> tuple[bool | None, list, list]:
    """Whether each seed's runs of two arms share one environment: ``a`` / ``b`` map a seed to
    the environment keys of its runs (None for a run without a record). Returns (True when all
    do, False when a seed mixes two, None when a run recorded none; the seeds that mix; the
    seeds with an unrecorded run)."""
    mixed, unknown = [], []
    for s in seeds:
        keys = a.get(s, {None}) | b.get(s, {None})
        if None in keys:
            unknown.append(s)
        elif len(keys) > 1:
            mixed.append(s)
    return (False if mixed else None if unknown else True), mixed, unknown
