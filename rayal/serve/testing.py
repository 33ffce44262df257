"""Launching a real ``rayal serve`` process for tests and benchmarks (one copy of the helpers
``tests/serve`` and ``jobs/bench_service.py`` share): a free loopback port, the synthetic
demo config, start (wait for ``/health``) and stop (SIGINT, then SIGKILL of its process group).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_config(tmp: Path, port: int, tokens: list[dict], *, name: str = "servetest",
                height: int = 48, width: int = 64, frames: int = 12, grid=(2, 2),
                **extra) -> dict:
    """A small ``rayal serve`` config on synthetic frames (8 classes, patch units, CPU);
    ``extra`` replaces top-level sections."""
    return {
        "name": name, "seed": 0, "device": "cpu", "output_dir": str(tmp / "out"),
        "data": {"source": "synthetic", "num_classes": 8,
                 "synthetic": {"num_frames": frames, "height": height, "width": width,
                               "eval_frames": 4}},
        "model": {"arch": "Unet", "encoder": "resnet18", "encoder_depth": 3,
                  "decoder_channels": [32, 16, 16]},
        "scoring": {"measures": ["entropy"], "mc_samples": 0, "units": ["patch"],
                    "grid": list(grid), "batch_size": 8},
        "selection": {"strategy": "entropy", "params": {"aggregate": "mean"}, "budget": 4},
        "pool": {"unit": "patch", "project": "demo", "state_dir": str(tmp / "pool")},
        "train": {"epochs": 1, "batch_size": 4},
        "ray": {"num_cpus": 2, "actors": 1, "cpus_per_actor": 1.0},
        "serve": {"port": port, "tokens": tokens},
        **extra}


def health(url: str, timeout: float = 5) -> int | None:
    """``GET /health``'s status, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as r:
            json.loads(r.read())
            return r.status
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, ValueError):
        return None


def start_serve(config: dict, tmp: Path, timeout: float = 240, env: dict | None = None) -> dict:
    """Write ``config`` to ``tmp/config.yaml``, start ``rayal serve`` on it (its own process
    group, output in ``tmp/serve.log``) and wait until ``/health`` answers 200. Returns
    ``{"url", "proc", "log", "port", "config"}``; RuntimeError with the log's tail when it exits
    or does not come up within ``timeout`` seconds (it is stopped then)."""
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    log = tmp / "serve.log"
    proc = subprocess.Popen([sys.executable, "-m", "rayal.cli.main", "serve", str(path)],
                            cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    port = config["serve"]["port"]
    s = {"url": f"http://127.0.0.1:{port}", "proc": proc, "log": str(log), "port": port,
         "config": str(path)}
    deadline = time.monotonic() + timeout
    while health(s["url"]) != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited {proc.returncode}" if proc.poll() is not None else "did not come up"
            stop_serve(s, signal.SIGKILL)
            raise RuntimeError(f"rayal serve {why}: {log.read_text()[-3000:]}")
        time.sleep(0.5)
    return s


def stop_serve(s: dict, sig: int = signal.SIGINT, timeout: float = 60) -> int | None:
    """Send ``sig`` to the service's process group, wait, then SIGKILL what is left; returns
    its exit code."""
    proc = s["proc"]
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        except ProcessLookupError:
            pass
    return proc.returncode


__all__ = ["free_port", "demo_config", "health", "start_serve", "stop_serve"]
