"""Starting and stopping ``rayal serve``: Ray, the project's actors, the Serve application.

:func:`run_service` connects to Ray (``--address`` / ``ray.address`` / ``RAY_ADDRESS``, else a
local Ray), gets the project's coordinator (registering the data source's frames when the pool
has none), starts the desk (leases) and job runner actors, deploys the FastAPI ingress on Ray
Serve at ``serve.host``:``serve.port``, prints the URL and serves until SIGINT / SIGTERM, then
deletes the application, shuts Serve down and releases the pool (snapshot + lease).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from ray import serve

from rayal.config import RayalConfig

APP_NAME = "rayal"
_HANDLES: dict = {}


@serve.ingress()
class Ingress:
    """The Serve deployment: one FastAPI app per replica (:func:`rayal.serve.app.build_app`)."""

    def __init__(self, config: dict, serve_dir: str, tokens: list[dict]):
        from rayal.serve.app import build_app

        self._app = build_app(config, serve_dir, tokens)

    def __serve_build_asgi_app__(self):
        return self._app


def ingress_deployment(config: RayalConfig):
    """The ingress deployment with the config's replicas and per-replica concurrency."""
    return serve.deployment(Ingress, name="rayal_ingress").options(
        num_replicas=config.serve.replicas, max_ongoing_requests=config.serve.max_ongoing_requests,
        ray_actor_options={"num_cpus": 0})


def serve_dir_of(config: RayalConfig) -> str:
    return os.path.abspath(os.path.join(config.output_dir, "serve"))


def _value(state) -> str:
    return getattr(state, "value", state)


def proxies_healthy() -> bool:
    """True once Ray Serve has proxies and every one is healthy."""
    proxies = serve.status().proxies
    return bool(proxies) and all(_value(p) == "HEALTHY" for p in proxies.values())


def proxies_ready() -> bool:
    """:func:`proxies_healthy`, and the rayal application is running."""
    app = serve.status().applications.get(APP_NAME)
    return proxies_healthy() and app is not None and _value(app.status) == "RUNNING"


def waiting_for_proxy(step, ready, deadline: float, timeout_s: float, poll_s: float = 2.0) -> None:
    """Run ``step`` (``serve.start`` / ``serve.run``) once; when it fails only because Ray
    Serve's HTTP proxy was not ready within Ray's fixed 60 s, poll ``ready`` (every ``poll_s``)
    until it holds or ``deadline`` (monotonic seconds) passes. The step is never repeated: a
    second ``serve.run`` would roll out new replicas (Ray versions each deploy anew).

    Raises:
        TimeoutError: still not ready at ``deadline``, naming ``serve.start_timeout_s``; any
            other error of ``step`` at once.
    """
    try:
        step()
        return
    except TimeoutError as err:
        if "not available after" not in str(err):
            raise
        late = err
    print(f"rayal serve: {late} Waiting on, up to serve.start_timeout_s.", file=sys.stderr, flush=True)
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(poll_s)
    raise TimeoutError(f"rayal serve: Ray Serve's HTTP proxy was not ready within "
                       f"serve.start_timeout_s={timeout_s:g} s ({late}); the node may be "
                       "overloaded: raise serve.start_timeout_s") from late


def start_service(config: RayalConfig, out=None) -> dict:
    """Everything but the wait: returns ``{"url", "token_file", "serve_dir"}``."""
    import pyarrow as pa
    import ray

    from rayal.pipeline.score.frames import pool_frame_batches
    from rayal.pipeline.runtime import init_ray
    from rayal.pool.coordinator import get_or_create_coordinator
    from rayal.serve.auth import resolve_tokens
    from rayal.serve.jobs import get_or_create_runner
    from rayal.pipeline.score.self_supervised import with_self_supervised_encoder
    from rayal.serve.leases import get_or_create_desk

    out = out or sys.stdout
    if config.data.num_classes is None:
        raise ValueError("rayal serve needs data.num_classes (to validate labels)")
    sdir = serve_dir_of(config)
    os.makedirs(sdir, exist_ok=True)
    tokens, token_file = resolve_tokens(config.serve.tokens, sdir, config.pool.project)
    init_ray(config.ray)
    # a self-supervised embedding space is trained once here, not by every round's scoring job
    config = with_self_supervised_encoder(config, os.path.join(sdir, "ssl_cache"), progress=True)
    pool = get_or_create_coordinator(config.pool)
    if ray.get(pool.status.remote())["frames"] == 0:
        total = 0
        for batch in pool_frame_batches(config.data):
            total += ray.get(pool.register.remote(pa.Table.from_batches([batch])))["registered"]
        print(f"registered {total} frame(s) in pool {config.pool.project!r}", file=out)
    # the driver owns these actors: keep their handles, or Ray ends them
    _HANDLES[config.pool.project] = (get_or_create_desk(config, sdir),
                                     get_or_create_runner(config, sdir))
    host, port = config.serve.host, config.serve.port
    deadline, timeout_s = time.monotonic() + config.serve.start_timeout_s, config.serve.start_timeout_s
    waiting_for_proxy(lambda: serve.start(http_options={"host": host, "port": port}),
                      proxies_healthy, deadline, timeout_s)
    deployment = ingress_deployment(config)
    app = deployment.bind(config.model_dump(mode="json"), sdir, [t.model_dump() for t in tokens])
    waiting_for_proxy(lambda: serve.run(app, name=APP_NAME, route_prefix="/"), proxies_ready,
                      deadline, timeout_s)
    url = f"http://{host}:{port}"
    print(f"rayal serve: project {config.pool.project!r} at {url} (API docs {url}/docs)", file=out)
    if token_file:
        print(f"rayal serve: generated tokens (admin, annotator) in {token_file}", file=out)
    out.flush()
    return {"url": url, "token_file": token_file, "serve_dir": sdir}


def build_application(args: dict):
    """Serve's ``import_path`` target for a KubeRay ``RayService`` (``serveConfigV2``):
    ``args = {"config": PATH}``. Registers the frames when the pool is empty and starts the
    project's desk and job runner as detached actors (Serve's build process is transient);
    tokens come from ``serve.tokens`` or the ``RAYAL_SERVE_*_TOKEN`` environment (a Secret):
    none is refused, since a generated file would be lost with the build process."""
    import ray

    from rayal.config import load_config
    from rayal.pipeline.score.self_supervised import with_self_supervised_encoder
    from rayal.pool.coordinator import get_or_create_coordinator
    from rayal.serve.auth import tokens_from_env
    from rayal.serve.jobs import get_or_create_runner
    from rayal.serve.leases import get_or_create_desk

    config = load_config(args["config"], list(args.get("set", [])))
    tokens = list(config.serve.tokens) or tokens_from_env()
    if not tokens:
        raise ValueError("a RayService needs serve.tokens or RAYAL_SERVE_ADMIN_TOKEN / "
                         "RAYAL_SERVE_ANNOTATOR_TOKEN (from a Secret)")
    sdir = serve_dir_of(config)
    os.makedirs(sdir, exist_ok=True)
    config = with_self_supervised_encoder(config, os.path.join(sdir, "ssl_cache"))
    pool = get_or_create_coordinator(config.pool)
    if ray.get(pool.status.remote())["frames"] == 0:
        import pyarrow as pa

        from rayal.pipeline.score.frames import pool_frame_batches

        for batch in pool_frame_batches(config.data):
            ray.get(pool.register.remote(pa.Table.from_batches([batch])))
    get_or_create_desk(config, sdir, detached=True)
    get_or_create_runner(config, sdir, detached=True)
    deployment = ingress_deployment(config)
    return deployment.bind(config.model_dump(mode="json"), sdir, [t.model_dump() for t in tokens])


def stop_service(config: RayalConfig) -> None:
    """Delete the app, shut Serve down, release the project's actors and the pool's lease."""
    import ray

    from rayal.pool.coordinator import shutdown_coordinator
    from rayal.serve.jobs import runner_name
    from rayal.serve.leases import desk_name

    try:
        serve.shutdown()
    finally:
        for name in (desk_name(config.pool.project), runner_name(config.pool.project)):
            try:
                ray.kill(ray.get_actor(name, namespace=config.pool.namespace), no_restart=True)
            except ValueError:
                pass
        _HANDLES.pop(config.pool.project, None)
        shutdown_coordinator(config.pool)


def run_service(config: RayalConfig, out=None) -> int:
    """Start, print the URL, serve until SIGINT / SIGTERM, stop cleanly; returns 0."""
    out = out or sys.stdout
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        start_service(config, out)
        while not stop.wait(0.5):
            pass
        print("rayal serve: stopping", file=out, flush=True)
    finally:
        try:
            stop_service(config)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    print("rayal serve: stopped", file=out, flush=True)
    return 0
