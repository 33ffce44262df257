"""Load and faults of ``rayal serve``: concurrent annotators over loopback while the pool's
coordinator actor and a Serve replica are killed, then a durability check from the journal.

The bench starts its own Ray head (``ray start --head --block`` on free ports, in its own
session) and a real ``rayal serve CONFIG --address <head>`` subprocess on 127.0.0.1, on
synthetic frames cut into a patch grid (one unit per patch). An admin starts one round that
queues every unit; ``--annotators`` threads (>= 32) then loop: lease ``n`` tasks, post a
full-frame PNG label for each, until ``--units`` labels are acknowledged. Clients retry
connection errors and 5xx with backoff (the kill windows). Faults, from this process connected
to the same Ray (``ray.init(address=...)``): at a quarter of the target the coordinator
(``rayal-pool-<project>`` in namespace ``pool.namespace``) is killed with
``ray.kill(handle, no_restart=False)`` (Ray restarts it and it recovers from its journal); at
three fifths one of the two ingress replica actors (``SERVE_REPLICA::...rayal_ingress...``) is
killed (the other keeps serving) and Serve starts a new one. A kill window runs from the kill
until the bench sees the actor answer again (the coordinator's ``describe``; ``/health`` from a
new replica; the end of the load phase when none answers before it); latencies of requests
overlapping a window are left out of the ``*_ms`` percentiles.

Afterwards the service is stopped (SIGINT), the pool is recovered from its journal on disk,
and the figures are printed:

- ``labels_submitted``: labels acknowledged with 200 (distinct tasks);
- ``labels_lost``: acknowledged tasks that are not labelled in the recovered pool;
- ``double_leases``: tasks held by two annotators at once in the bench's own lease log (a
  lease held from its grant until that annotator's label is acknowledged);
- ``lease_p50_ms``, ``lease_p99_ms``, ``label_p99_ms``: outside the kill windows;
- ``labels_per_second``: acknowledged labels over the load phase's wall time.

    python jobs/bench_service.py            # 2,000 units, 32 annotators
    python jobs/bench_service.py --quick    # 160 units, 32 annotators (< 2 minutes)

The last three lines are ``labels_lost: <int>``, ``double_leases: <int>``, ``lease_p99_ms: <float>``.
"""
from __future__ import annotations

import argparse
import base64
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # run from a checkout: the shared launch helpers

from rayal.serve.testing import free_port, start_serve, stop_serve  # noqa: E402
ADMIN, ANNOTATOR = "bench-admin-token-0123456789", "bench-annot-token-0123456789"
PROJECT, NUM_CLASSES, GRID = "bench", 8, (4, 4)


def bench_config(tmp: Path, units: int, port: int, address: str,
                 max_ongoing: int | None = None) -> dict:
    """A config whose pool holds exactly ``units`` patch units (``units`` / 16 frames)."""
    frames = units // (GRID[0] * GRID[1])
    return {
        "name": "bench_service", "seed": 0, "device": "cpu", "output_dir": str(tmp / "out"),
        "data": {"source": "synthetic", "num_classes": NUM_CLASSES,
                 "synthetic": {"num_frames": frames, "height": 32, "width": 32, "eval_frames": 2}},
        "model": {"arch": "Unet", "encoder": "resnet18", "encoder_depth": 3,
                  "decoder_channels": [16, 16, 16]},
        "scoring": {"measures": ["entropy"], "mc_samples": 0, "units": ["patch"],
                    "grid": list(GRID), "batch_size": 32},
        "selection": {"strategy": "random", "budget": units},
        "pool": {"unit": "patch", "project": PROJECT, "state_dir": str(tmp / "pool"),
                 "lease_seconds": 3600},
        "train": {"epochs": 1, "batch_size": 4},
        "ray": {"address": address, "num_cpus": 2, "actors": 1, "cpus_per_actor": 1.0},
        "serve": {"port": port, "max_lease": 8, "replicas": 2, "tokens": [
            {"token": ADMIN, "role": "admin"}, {"token": ANNOTATOR, "role": "annotator"}],
            **({} if max_ongoing is None else {"max_ongoing_requests": max_ongoing})}}


class Log:
    """Thread-safe records of every request and lease the annotators saw."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls: list[tuple[str, float, float, int]] = []   # (kind, start, end, status)
        self.grants: dict[str, list[tuple[str, float]]] = {}   # task -> [(annotator, t)]
        self.acks: dict[str, tuple[str, float]] = {}           # task -> (annotator, t) first 200
        self.errors: list[str] = []
        self.retries = 0

    def call(self, kind, start, end, status):
        with self.lock:
            self.calls.append((kind, start, end, status))


def request(session, log: Log, kind: str, url: str, body: dict, deadline: float):
    """POST with retries on connection errors / 5xx (exponential backoff, capped); each try is
    logged. Returns (status, json) of the first non-5xx answer, or (None, None) past deadline."""
    delay = 0.05
    while time.monotonic() < deadline:
        start = time.monotonic()
        try:
            r = session.post(url, json=body, timeout=30,
                             headers={"Authorization": f"Bearer {ANNOTATOR}"})
            status = r.status_code
        except requests.RequestException:
            status = 0
        log.call(kind, start, time.monotonic(), status)
        if status and status < 500:
            return status, r.json()
        with log.lock:
            log.retries += 1
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    return None, None


def annotator(name: str, v1: str, log: Log, pngs: list[str], target: int, n: int,
              deadline: float, done: threading.Event, think: float = 0.0) -> None:
    """One simulated annotator: lease ``n``, label each task after 0.5-1.5 x ``think`` seconds
    (the time a person spends drawing it, seeded per annotator; 0: back to back, the
    service's saturation), until ``done``."""
    session = requests.Session()
    rng = np.random.default_rng(sum(map(ord, name)))   # seeded: the same pace every run
    if think and done.wait(rng.uniform(0, think)):      # people do not start in lockstep
        return
    while not done.is_set() and time.monotonic() < deadline:
        status, reply = request(session, log, "lease", v1 + "/leases",
                                {"annotator": name, "n": n}, deadline)
        if status != 200:
            if status is not None:
                with log.lock:
                    log.errors.append(f"lease {status}: {reply}")
            continue
        got = time.monotonic()
        tasks = reply["tasks"]
        with log.lock:
            for t in tasks:
                log.grants.setdefault(t["task_id"], []).append((name, got))
        if not tasks:   # every unit is leased: ask again later, as a person would
            done.wait(max(think, 0.1))
            continue
        for t in tasks:
            if think and done.wait(rng.uniform(0.5, 1.5) * think):
                break
            tid = t["task_id"]
            cls = sum(map(ord, tid)) % NUM_CLASSES
            status, reply = request(session, log, "label", v1 + "/labels", {
                "task_id": tid, "annotator": name, "mask_png_base64": pngs[cls]}, deadline)
            with log.lock:
                if status == 200:
                    log.acks.setdefault(tid, (name, time.monotonic()))
                    if len(log.acks) >= target:
                        done.set()
                elif status is not None:
                    log.errors.append(f"label {tid} {status}: {reply}")


def double_leases(log: Log, end: float) -> int:
    """Tasks where two annotators' holds overlap; a hold runs from its grant until that
    annotator's acknowledged label (or the end of the run)."""
    count = 0
    for tid, grants in log.grants.items():
        holds: dict[str, list[float]] = {}
        for who, t in grants:
            start = min(holds.get(who, [t])[0], t)
            ack = log.acks.get(tid)
            holds[who] = [start, ack[1] if ack and ack[0] == who else end]
        spans = sorted(holds.values())
        if any(b[0] < a[1] for a, b in zip(spans, spans[1:])):
            count += 1
    return count


def percentile_ms(log: Log, kind: str, windows: list[tuple[float, float]], q: float) -> float:
    values = [(e - s) * 1000 for k, s, e, st in log.calls if k == kind and st == 200
              and not any(s < w1 and e > w0 for w0, w1 in windows)]
    return float(np.percentile(values, q)) if values else float("nan")


def kill_coordinator(ray) -> tuple[float, float]:
    """Kill the pool's coordinator (Ray restarts it); returns the window (start, back)."""
    handle = ray.get_actor(f"rayal-pool-{PROJECT}", namespace="rayal")
    start = time.monotonic()
    ray.kill(handle, no_restart=False)
    while True:
        try:
            ray.get(handle.describe.remote(), timeout=30)
            return start, time.monotonic()
        except Exception:  # noqa: BLE001 - restarting: ask again
            time.sleep(0.05)


def replica_names(ray) -> list[str]:
    from ray.util import list_named_actors

    return sorted(a["name"] for a in list_named_actors(all_namespaces=True)
                  if a["namespace"] == "serve" and a["name"].startswith("SERVE_REPLICA")
                  and "rayal_ingress" in a["name"])


def kill_replica(ray, url: str, window: list, stop: threading.Event) -> threading.Thread:
    """Kill one ingress replica actor (the other keeps serving); Serve starts a new one.
    ``window`` = [kill time, None]; a watcher thread sets [1] when a new replica answers
    /health (the run's end when it does not before then, ``stop`` set)."""
    old = replica_names(ray)
    if not old:
        raise RuntimeError("no rayal_ingress replica actor found in namespace 'serve'")
    window[:] = [time.monotonic(), None]
    ray.kill(ray.get_actor(old[0], namespace="serve"))

    def watch():
        while not stop.is_set():
            fresh = [n for n in replica_names(ray) if n not in old]
            if fresh:
                try:
                    if requests.get(url + "/health", timeout=5).status_code == 200:
                        window[1] = time.monotonic()
                        return
                except requests.RequestException:
                    pass
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def labelled_in_journal(state_dir: str) -> set[str]:
    """Task ids (``<round>.<region>.<frame>``) labelled in the pool recovered from disk."""
    from rayal.pool.coordinator import units_table
    from rayal.pool.journal import Journal
    from rayal.pool.state import apply_record
    from rayal.pool.tasks import task_id

    state, replay, _ = Journal(state_dir).recover()
    for seq, record in replay:
        state = apply_record(state, record, seq)
    units = units_table(state, "labeled")
    return {task_id(r, f, g) for f, g, r in zip(*(units.column(c).to_pylist()
                                                 for c in ("frame_id", "region_id", "round")))}


def png64(value: int, shape) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full(shape, value, np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def stop_head(head, temp_dir: Path, grace: float = 20) -> None:
    """SIGTERM to ``ray start --block`` (it stops its processes), then SIGKILL, by pid, what is
    left of its session (the head's own processes only)."""
    import shutil

    import psutil

    session = head.pid
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(grace)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(10)
    left = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and os.getsid(p.pid) == session:
                left.append(p)
        except (psutil.Error, ProcessLookupError, PermissionError):
            pass
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=10)
    shutil.rmtree(temp_dir, ignore_errors=True)


def run(units: int, annotators: int, n: int, load_seconds: float, tmp: Path,
        max_ongoing: int | None = None, think: float = 0.0) -> dict:
    import ray

    gcs, port = free_port(), free_port()
    ray_bin = Path(sys.executable).with_name("ray")
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    # the head's own token (Ray token auth), for the service and this process alike
    env.update(RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    temp_dir = Path(tempfile.mkdtemp(prefix="rayal-bs-", dir="/tmp"))   # short socket paths
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2",
         "--include-dashboard=false", f"--dashboard-agent-listen-port={free_port()}",
         f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", f"--temp-dir={temp_dir}",
         "--object-store-memory=200000000"],
        stdout=open(tmp / "ray_head.log", "w"), stderr=subprocess.STDOUT, env=env,
        stdin=subprocess.DEVNULL, start_new_session=True)
    serve_proc = None
    try:
        t0 = time.monotonic()
        address_file = temp_dir / "ray_current_cluster"
        while not address_file.exists() or not address_file.read_text().strip():
            if head.poll() is not None or time.monotonic() - t0 > 180:
                raise RuntimeError(f"ray head did not start: {(tmp / 'ray_head.log').read_text()[-2000:]}")
            time.sleep(0.5)
        address = address_file.read_text().strip()
        config = bench_config(tmp, units, port, address, max_ongoing)
        url, v1 = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/v1/projects/{PROJECT}"
        print(f"ray head at {address} after {time.monotonic() - t0:.1f}s", flush=True)
        serve = start_serve(config, tmp, 300, env=env)
        serve_proc = serve["proc"]
        print(f"service up after {time.monotonic() - t0:.1f}s", flush=True)
        auth = {"Authorization": f"Bearer {ADMIN}"}
        job = requests.post(v1 + "/rounds", json={"strategy": "random", "budget": units},
                            headers=auth, timeout=60).json()
        while True:
            state = requests.get(f"{v1}/jobs/{job['job_id']}", headers=auth, timeout=60).json()
            if state["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.5)
        if state["state"] != "succeeded" or state["result"]["selected"] != units:
            raise RuntimeError(f"the round did not queue {units} units: {state}")
        print(f"round queued {units} units after {time.monotonic() - t0:.1f}s", flush=True)

        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        synth = config["data"]["synthetic"]
        pngs = [png64(c, (synth["height"], synth["width"])) for c in range(NUM_CLASSES)]
        log, done = Log(), threading.Event()
        start = time.monotonic()
        deadline = start + load_seconds
        threads = [threading.Thread(target=annotator, daemon=True, args=(
            f"ann{i:02d}", v1, log, pngs, units, n, deadline, done, think))
            for i in range(annotators)]
        for t in threads:
            t.start()
        stop_watch, watchers = threading.Event(), []
        windows, faults = [], [(units // 4, "coordinator"), (units * 3 // 5, "replica")]
        for at, what in faults:
            while len(log.acks) < at and not done.is_set() and time.monotonic() < deadline:
                time.sleep(0.02)
            if time.monotonic() >= deadline:
                break
            if what == "coordinator":
                w = list(kill_coordinator(ray))
                print(f"killed the coordinator at {len(log.acks)} labels; back after "
                      f"{(w[1] - w[0]) * 1000:.0f} ms", flush=True)
            else:
                w = [None, None]
                watchers.append(kill_replica(ray, url, w, stop_watch))
                print(f"killed a replica at {len(log.acks)} labels", flush=True)
            windows.append(w)
        for t in threads:
            t.join()
        end = time.monotonic()
        print(f"load phase done after {end - start:.1f}s", flush=True)
        with open(tmp / "calls.csv", "w") as f:   # every request: for a look at the tail
            f.write("kind,start_s,ms,status\n")
            f.writelines(f"{k},{a - start:.3f},{(b - a) * 1000:.1f},{st}\n" for k, a, b, st in log.calls)
        stop_watch.set()
        for w in watchers:   # none may call Ray after the shutdown below (it would start one)
            w.join(timeout=30)
        replica_back = [w[1] is not None for w in windows]
        windows = [(a, b if b is not None else end) for a, b in windows]
        ray.shutdown()
        status = requests.get(v1 + "/status", headers=auth, timeout=60).json()
        stop_serve(serve, signal.SIGINT, 120)
        stored = labelled_in_journal(os.path.join(config["pool"]["state_dir"], PROJECT))
        acked = set(log.acks)
        return {
            "labels_submitted": len(acked),
            "labels_lost": len(acked - stored),
            "double_leases": double_leases(log, end),
            "lease_p50_ms": percentile_ms(log, "lease", windows, 50),
            "lease_p99_ms": percentile_ms(log, "lease", windows, 99),
            "label_p50_ms": percentile_ms(log, "label", windows, 50),
            "label_p99_ms": percentile_ms(log, "label", windows, 99),
            "labels_per_second": len(acked) / (end - start),
            "think_seconds": think,
            "kills": len(windows),
            "kill_window_ms": [round((b - a) * 1000) for a, b in windows],
            "replaced_before_end": replica_back,
            "retries": log.retries,
            "client_errors": len(log.errors),
            "first_errors": log.errors[:3],
            "labelled_in_pool": len(stored),
            "status_labeled": status["counts"]["labeled"],
            "labels_target_reached": len(acked) >= units,
        }
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if serve_proc is not None:
            stop_serve({"proc": serve_proc}, signal.SIGKILL)
        stop_head(head, temp_dir)


class _QueryOnly:
    """The three coordinator calls a desk's cache makes, for a round of ``n`` queued units."""

    def __init__(self, n: int):
        import pyarrow as pa

        ids = [f"f{i:07d}" for i in range(n)]
        self.table = pa.table({"frame_id": ids, "region_id": [0] * n, "rank": list(range(n)),
                               "score": [1.0] * n})

    def status(self):
        return {"per_round": {0: {}}}

    def query(self, round_id):
        return self.table

    def units(self, status, round_id):
        return self.table.select(["frame_id", "region_id"])


def desk_lease_ms(n_units: int, leases: int = 500) -> float:
    """Milliseconds per lease of the desk alone (in process), over a round of ``n_units``:
    ``leases`` requests of 2 units each, every one from a new annotator, so the free units are
    found deeper in the query and the book grows by 2 a request."""
    from rayal.serve.leases import TaskDesk

    with tempfile.TemporaryDirectory(prefix="bench_desk_") as tmp:
        desk = TaskDesk(_QueryOnly(n_units), tmp, lease_seconds=3600)
        desk.refresh()
        t0 = time.perf_counter()
        for i in range(leases):
            desk.lease(f"ann{i}", 2)
        return (time.perf_counter() - t0) / leases * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="160 units (under two minutes)")
    parser.add_argument("--units", type=int, help="units to label (a multiple of 16)")
    parser.add_argument("--annotators", type=int, default=32)
    parser.add_argument("--lease-n", type=int, default=2, help="tasks per lease request")
    parser.add_argument("--think-seconds", type=float, default=2.0,
                        help="seconds an annotator spends on a task before posting its label "
                        "(a person's pace; 0: back to back, the service's saturation)")
    parser.add_argument("--max-ongoing-requests", type=int, default=None,
                        help="serve.max_ongoing_requests of the ingress (default: the config's)")
    parser.add_argument("--keep", help="keep the work directory here (logs, pool, masks)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # stop the head and service too
    # the head's own token (Ray token auth) for the head, the service and this process; set
    # before Ray is imported, which reads it
    import secrets

    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    small, large = desk_lease_ms(2_000), desk_lease_ms(100_000)
    print(f"desk_lease_ms_2k_units: {small:.3f}\ndesk_lease_ms_100k_units: {large:.3f}\n"
          f"desk_lease_100k_vs_2k: {large / small:.2f}", flush=True)
    units = args.units or (160 if args.quick else 2000)
    if units % 16 or units < 64:
        parser.error(f"--units must be a multiple of 16 and >= 64, got {units}")
    if args.annotators < 1:
        parser.error("--annotators must be >= 1")
    load_seconds = 90.0 if args.quick else 900.0
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        figures = run(units, args.annotators, args.lease_n, load_seconds, Path(args.keep).resolve(),
                      args.max_ongoing_requests, args.think_seconds)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_service_") as tmp:
            figures = run(units, args.annotators, args.lease_n, load_seconds, Path(tmp),
                          args.max_ongoing_requests, args.think_seconds)
    for key, value in figures.items():
        if key not in ("labels_lost", "double_leases", "lease_p99_ms"):
            print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"labels_lost: {figures['labels_lost']}")
    print(f"double_leases: {figures['double_leases']}")
    print(f"lease_p99_ms: {figures['lease_p99_ms']:.1f}")


if __name__ == "__main__":
    main()
