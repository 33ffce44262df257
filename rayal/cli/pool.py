"""``rayal pool init | select | export | ingest | status``: talk to the project's coordinator.

Every subcommand connects to Ray (``ray.address`` / ``RAY_ADDRESS``, else a local
Ray), gets or creates the detached ``rayal-pool-<project>`` actor and calls it. One writer
per state dir: while another Ray cluster's coordinator holds its lease, a command exits 2
naming that holder (see :mod:`rayal.pool.lock`).
Wire into ``rayal.cli.main`` with ``add_pool_parser(subparsers)`` and dispatch
``pool`` to :func:`cmd_pool`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import pyarrow as pa


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML config (defaults when omitted)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. pool.project=cars")


def add_pool_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``pool`` and its subcommands to the ``rayal`` sub-parsers."""
    pool = subparsers.add_parser("pool", help="durable pool state: register, select, export, ingest")
    sub = pool.add_subparsers(dest="pool_command", required=True)
    init = sub.add_parser("init", help="register the frames of the config's data source")
    _config_args(init)
    select = sub.add_parser("select", help="run selection.strategy on a round's score tables")
    _config_args(select)
    select.add_argument("--round", type=int, required=True, help="round id (a retry returns the same query)")
    select.add_argument("--score-dir", required=True, help="directory written by `rayal score`")
    select.add_argument("--seed", type=int, help="default: the config's seed + round")
    select.add_argument("--owner", default="annotators", help="lease owner of the queued units")
    select.add_argument("--plugin", action="append", default=[],
                        help="module or .py file registering extra strategies (repeatable)")
    export = sub.add_parser("export", help="write a round's query: parquet + JSON lines, COCO "
                            "JSON or Label Studio tasks")
    _config_args(export)
    export.add_argument("--round", type=int, required=True)
    export.add_argument("--out", help="output directory (default <output_dir>/queries)")
    export.add_argument("--format", default="parquet", metavar="FORMAT",
                        help="parquet (default), coco or labelstudio (rle / polygon / both: "
                        "parquet with that --mask-format)")
    export.add_argument("--mask-format", choices=("rle", "polygon", "both"), default="rle",
                        help="region encoding of the parquet export")
    export.add_argument("--labels", metavar="oracle|DIR", help="coco / labelstudio: include "
                        "labels from the frames' registered masks (oracle) or <frame_id>.png in DIR")
    ingest = sub.add_parser("ingest", help="summarise labels of queued units and ingest them")
    _config_args(ingest)
    source = ingest.add_mutually_exclusive_group(required=True)
    source.add_argument("--masks", help="labels: a directory of <frame_id>.png / "
                        "<frame_id>__<region>.png (png), or a COCO / Label Studio JSON file")
    source.add_argument("--oracle", action="store_true", help="use the frames' registered masks")
    ingest.add_argument("--format", default="png", metavar="FORMAT",
                        help="format of --masks: png (default), coco or labelstudio")
    ingest.add_argument("--round", type=int, help="only units queued in this round")
    ingest.add_argument("--on-error", choices=("raise", "quarantine"), default="raise",
                        help="a bad mask rejects the batch (default) or quarantines its units")
    status = sub.add_parser("status", help="units per status, class and round")
    _config_args(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of tables")
    repair = sub.add_parser("repair", help="keep a journal two writers appended to up to their "
                            "first clash; set the later records aside")
    _config_args(repair)
    return pool


def _repair(config) -> int:
    """``rayal pool repair``: no Ray, the state dir's lease, then :func:`repair_journal`."""
    from rayal.pool.coordinator import pool_state_dir
    from rayal.pool.repair import repair_journal

    out = repair_journal(pool_state_dir(config.pool), ttl=config.pool.lock_ttl)
    if not out["set_aside"]:
        print(f"journal consistent up to record {out['kept_up_to']}: nothing to repair")
        return 0
    print(f"kept records up to {out['kept_up_to']}; set aside {len(out['set_aside'])} later "
          f"record(s) and {len(out['snapshots'])} snapshot(s) under {out['to']}:")
    for row in out["set_aside"]:
        print("  " + "  ".join(f"{k} {v}" for k, v in row.items()))
    print("redo the rounds listed above (pool select / ingest)")
    return 0


def _get(ref):
    """ray.get, re-raising the actor's own exception (not Ray's wrapper with its traceback)."""
    import ray

    from rayal.errors import PoolError

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, KeyError):   # the coordinator's "round N has no query"
            raise PoolError(cause.args[0] if cause.args else str(cause)) from None
        raise (cause if isinstance(cause, BaseException) else err) from None


def _units_per_frame(config) -> int | None:
    """Exact units per frame from the unit registry (image 1, patch the grid); None when only
    nominal (superpixels)."""
    from rayal.core.units import get_unit

    spec = get_unit(config.pool.unit)
    return spec.units_per_frame(config.scoring) if spec.exact_count else None


def print_status(status: dict, class_names=None, out=None) -> None:
    """Status as three small tables: units per status, per round, per class."""
    out = out or sys.stdout
    print(f"pool unit={status['unit']}  frames={status['frames']}  "
          f"units={status['units_total'] if status['units_total'] is not None else '?'}  "
          f"journal seq={status['seq']}", file=out)
    print(f"{'status':<20}{'units':>12}", file=out)
    for name in ("unlabeled", "queued", "labeled", "quarantined", "quarantined_frames"):
        value = status[name]
        print(f"{name:<20}{'?' if value is None else value:>12}", file=out)
    if status["per_round"]:
        print(f"{'round':>6}{'selected':>10}{'queued':>10}{'labeled':>10}", file=out)
        for r, row in sorted(status["per_round"].items()):
            print(f"{r:>6}{row['selected']:>10}{row['queued']:>10}{row['labeled']:>10}", file=out)
    units, pixels = status["per_class"]["units"], status["per_class"]["pixels"]
    if units:
        print(f"{'class':<16}{'units':>8}{'pixels':>14}", file=out)
        for c, (n, p) in enumerate(zip(units, pixels)):
            name = class_names[c] if class_names and c < len(class_names) else str(c)
            print(f"{name:<16}{n:>8}{p:>14}", file=out)


def _init(config, handle) -> None:
    from rayal.pipeline.score.frames import pool_frame_batches

    total = 0
    for batch in pool_frame_batches(config.data):
        total += _get(handle.register.remote(pa.Table.from_batches([batch])))["registered"]
    print(f"registered {total} new frame(s)")


def _select(config, handle, args) -> None:
    from rayal.data import exists, join_uri
    from rayal.pipeline.loop.selection_params import selection_params
    from rayal.selection.base import ScoreTables

    quarantine_dir = join_uri(args.score_dir, "quarantine")
    if exists(quarantine_dir):   # frames the score job could not read never get selected
        bad = ScoreTables(frames=quarantine_dir).read("frames", ["frame_id", "reason"])
        if bad.num_rows:
            report = _get(handle.quarantine.remote(bad.column("frame_id").to_pylist(), -1,
                                                   bad.column("reason").to_pylist()))
            print(f"quarantined {report['quarantined']} unreadable frame(s) from {quarantine_dir}")
    sel = config.selection
    budget = {"units": sel.budget} if sel.budget is not None else {"cost": sel.budget_cost}
    seed = args.seed if args.seed is not None else config.seed + args.round
    query = _get(handle.select.remote(sel.strategy, selection_params(config), budget, args.round,
                                      args.score_dir,
                                      seed, owner=args.owner,
                                      plugins=[*args.plugin, *config.selection.plugins]))
    print(f"round {args.round}: {query.num_rows} {config.pool.unit} unit(s) selected by {sel.strategy}")
    for row in query.slice(0, 10).to_pylist():
        print(f"  {row['rank']:>4}  {row['frame_id']}  region {row['region_id']}  "
              f"score {row['score']:.4g}  {row['reason']}")


def _export(config, handle, args) -> None:
    from rayal.data import join_uri
    from rayal.pool.formats import ExportRequest, get_exporter

    fmt, mask_format = args.format, args.mask_format
    if fmt in ("rle", "polygon", "both"):   # the mask format, as before formats were added
        fmt, mask_format = "parquet", fmt
    export = get_exporter(fmt)
    query = _get(handle.query.remote(args.round))
    frames = _get(handle.frames.remote(query.column("frame_id").unique().to_pylist()))
    out = export(ExportRequest(query, frames, args.out or join_uri(config.output_dir, "queries"),
                               args.round, config, labels=args.labels, mask_format=mask_format))
    print(f"exported {out['rows']} unit(s) as {fmt}: {' '.join(out['files'])}")


def _ingest(config, handle, args) -> None:
    from rayal.pool.formats import IngestRequest, get_importer
    from rayal.pool.labels import label_summaries

    importer = None if args.oracle else get_importer(args.format)
    units = _get(handle.units.remote("queued", args.round))
    frames = _get(handle.frames.remote(units.column("frame_id").unique().to_pylist()))
    on_error = "collect" if args.on_error == "quarantine" else "raise"
    if importer is None:
        batch = label_summaries(units, frames, unit=config.pool.unit, data=config.data,
                                scoring=config.scoring, on_error=on_error)
    else:
        batch = importer(IngestRequest(args.masks, units, frames, config, on_error=on_error))
    if batch.errors:
        ids = [(f, r, msg) for f, regions, msg in batch.errors for r in regions]
        f, r, msg = zip(*ids)
        _get(handle.quarantine.remote(list(f), list(r), list(msg)))
        print(f"quarantined {len(ids)} unit(s) of {len(batch.errors)} frame(s) with bad labels")
    for name, reason in batch.refused[:20]:
        print(f"not ingested: {name}: {reason}")
    if len(batch.refused) > 20:
        print(f"not ingested: {len(batch.refused) - 20} more file(s)")
    report = _get(handle.ingest.remote(batch.table, args.round))
    print("ingest: " + ", ".join(f"{k} {v}" for k, v in report.items())
          + f", no mask yet {len(batch.missing)}"
          + (f", files not ingested {len(batch.refused)}" if batch.refused else ""))


def cmd_pool(args: argparse.Namespace) -> int:
    """Run one ``rayal pool`` subcommand; returns the exit code. Errors (a bad frame or mask, a
    store refusing pool.state_dir, a damaged journal) are ``rayal.cli.main``'s to report."""
    from rayal.config import load_config
    from rayal.data import makedirs
    from rayal.pipeline.score.frames import check_unique_frame_ids
    from rayal.pipeline.runtime import init_ray
    from rayal.pipeline.loop.selection_params import check_selection
    from rayal.pool.coordinator import get_or_create_coordinator, load_plugins, pool_state_dir

    config = load_config(args.config, args.overrides)
    if args.pool_command == "repair":
        return _repair(config)
    if args.pool_command == "select":   # a bad strategy or params: named before Ray starts
        load_plugins(args.plugin)
        check_selection(config, check_tables=False)   # tables: the --scores directory's
    if args.pool_command in ("export", "ingest"):   # an unknown format: named before Ray starts
        from rayal.pool.formats import get_exporter, get_importer

        try:
            if args.pool_command == "export" and args.format not in ("rle", "polygon", "both"):
                get_exporter(args.format)
            elif args.pool_command == "ingest" and not args.oracle:
                get_importer(args.format)
        except KeyError as err:
            raise ValueError(err.args[0]) from None
    if args.pool_command == "init":   # the whole split, not batch by batch; as `rayal score`
        check_unique_frame_ids(config.data)
    init_ray(config.ray)
    # checked here, not in the actor: a store that refuses pool.state_dir (missing bucket,
    # bad credentials) is named on the command line, not in a traceback of the detached
    # actor's failed constructor
    makedirs(pool_state_dir(config.pool))
    handle = get_or_create_coordinator(config.pool)
    if args.pool_command == "init":
        _init(config, handle)
    elif args.pool_command == "select":
        _select(config, handle, args)
    elif args.pool_command == "export":
        _export(config, handle, args)
    elif args.pool_command == "ingest":
        _ingest(config, handle, args)
    status = _get(handle.status.remote(_units_per_frame(config)))
    if args.pool_command == "status" and getattr(args, "json", False):
        print(json.dumps(status, indent=2))
    elif args.pool_command in ("init", "ingest", "status"):
        print_status(status, config.data.class_names)
    return 0
