"""``rayal serve CONFIG [--host H] [--port P] [--address A]``: the active-learning service."""
from __future__ import annotations

import argparse


def add_serve_parser(subparsers, add_config_args) -> argparse.ArgumentParser:
    serve = subparsers.add_parser("serve", help="HTTP service for annotation tools (Ray Serve)")
    add_config_args(serve)
    serve.add_argument("--host", help="listen address (default serve.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default serve.port, 8000)")
    serve.add_argument("--address", help="Ray cluster address (default ray.address / a local Ray)")
    return serve


def cmd_serve(args: argparse.Namespace) -> int:
    from rayal.config import load_config
    from rayal.serve.service import run_service

    overrides = list(args.overrides)
    if args.host:
        overrides.append(f"serve.host={args.host}")
    if args.port is not None:
        overrides.append(f"serve.port={args.port}")
    if args.address:
        overrides.append(f"ray.address={args.address}")
    return run_service(load_config(args.config, overrides))
