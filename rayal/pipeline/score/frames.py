"""Frame sources and the decode stage (Ray-free callables that Ray Data runs as tasks).

A source is a table of ``frame_id, uri``: a folder dataset listed once, a
parquet manifest streamed by row group (never listed or held whole), or the
built-in synthetic scenes (``synthetic://SEED/INDEX``, rendered on the fly).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from rayal.config.sections import DataConfig, ScoringConfig
from rayal.data.io import StorageError, check_bucket, has_scheme
from rayal.data.splits import folder_dataset
from rayal.data import (FrameError, is_synthetic_uri, iter_manifest, load_image, load_synthetic,
                        manifest_num_rows, synthetic_uri, unit_region_map,
                        validate_manifest_schema)


@dataclass
class FrameSource:
    """Where the pool's frames are: either an in-memory table or a manifest URI to stream."""

    table: pa.Table | None
    manifest_uri: str | None
    num_frames: int


def frame_source(data: DataConfig) -> FrameSource:
    """The pool split's frames as a :class:`FrameSource` (``data.limit`` applied)."""
    limit = data.limit
    if data.source == "synthetic":
        n = min(data.synthetic.num_frames, limit or data.synthetic.num_frames)
        ids = [f"syn_{i:07d}" for i in range(n)]
        uris = [synthetic_uri(data.synthetic.seed, i) for i in range(n)]
        return FrameSource(pa.table({"frame_id": ids, "uri": uris}), None, n)
    if data.source == "folder":
        table = folder_dataset(data, data.pool_split).to_manifest().select(["frame_id", "uri"])
        if limit:
            table = table.slice(0, limit)
        return FrameSource(table, None, table.num_rows)
    validate_manifest_schema(data.manifest)
    n = manifest_num_rows(data.manifest)
    return FrameSource(None, data.manifest, min(n, limit or n))


def check_unique_frame_ids(data: DataConfig) -> None:
    """Refuse a pool split that lists a frame id twice (``data.limit`` applied), before any work:
    ``rayal score`` and ``rayal pool init`` give the same message. Reads only the ``frame_id``
    column (a manifest is streamed; its ids, ~30 bytes each, are held once).

    Raises:
        DataError: ``"data.manifest URI: frame id 'x' is listed 2 times"`` (or ``data.root``).
    """
    from rayal.errors import DataError
    import pyarrow.compute as pc

    if data.source == "synthetic":   # syn_0000000 ... by construction
        return
    if data.source == "manifest":
        where, chunks, left = f"data.manifest {data.manifest}", [], data.limit
        for batch in iter_manifest(data.manifest, columns=["frame_id"]):
            if left is not None:
                batch, left = batch.slice(0, left), left - min(left, batch.num_rows)
            chunks.append(batch.column(0))
            if left == 0:
                break
        ids = pa.chunked_array(chunks, pa.string()) if chunks else pa.chunked_array([], pa.string())
    else:
        where, ids = f"data.root {data.root}", frame_source(data).table.column("frame_id")
    if pc.count_distinct(ids).as_py() == len(ids):
        return
    counts = pc.value_counts(ids)
    dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]
    raise DataError(f"{where}: frame id {dup['values'].as_py()!r} is listed "
                    f"{dup['counts'].as_py()} times (frame ids must be unique)")


def check_frame_store(source: FrameSource) -> None:
    """Look up the first frame's bucket on the driver before any worker starts.

    A store refusing the credentials, or a bucket that does not exist, then fails the job here
    with a message naming the URI, instead of inside a Ray Data worker (whose error reaches
    the driver as a long wrapped traceback). A missing object is left to the decode stage,
    which quarantines that frame.
    """
    if source.num_frames == 0:
        return
    if source.table is not None:
        first = source.table.column("uri")[0].as_py()
    else:
        first = next(iter_manifest(source.manifest_uri, batch_size=1, columns=["uri"])).column(0)[0].as_py()
    if has_scheme(first) and not is_synthetic_uri(first):
        check_bucket(first)   # one bucket lookup: refused credentials or a missing bucket raise


class DecodeFrames:
    """Decode stage: ``{frame_id, uri}`` -> adds ``image`` (H, W, 3) uint8, one
    ``regions_<unit>`` (H, W) int32 map per requested unit, and ``error``.

    A frame that cannot be read or decoded keeps its row with ``error`` set and a
    1x1 placeholder image; the scoring stage passes it to the quarantine table. A store that
    refuses the read (missing bucket, bad credentials: :class:`rayal.data.io.StorageError`)
    fails the job instead: it is a configuration problem, and quarantining every frame of
    the pool for it would corrupt the pool state.
    """

    def __init__(self, data: DataConfig, scoring: ScoringConfig):
        self.data = data
        self.scoring = scoring

    def load(self, frame_id: str, uri: str) -> np.ndarray:
        if is_synthetic_uri(uri):
            syn = self.data.synthetic
            return load_synthetic(uri, syn.height, syn.width)[0]
        return load_image(uri, frame_id=frame_id, size=self.data.image_size)

    def regions(self, image: np.ndarray) -> dict[str, np.ndarray]:
        return {unit: unit_region_map(image, unit, self.scoring) for unit in self.scoring.units}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        images, errors = [], []
        regions: dict[str, list[np.ndarray]] = {u: [] for u in self.scoring.units}
        for frame_id, uri in zip(batch["frame_id"], batch["uri"]):
            try:
                image = self.load(str(frame_id), str(uri))
                maps = self.regions(image)
                error = ""
            except FrameError as err:
                image, maps, error = np.zeros((1, 1, 3), np.uint8), {}, str(err)
            except StorageError:
                raise
            except Exception as err:  # noqa: BLE001 - any bad frame is quarantined, never fatal
                image, maps, error = (np.zeros((1, 1, 3), np.uint8), {},
                                      f"frame {frame_id} ({uri}): {type(err).__name__}: {err}")
            images.append(image)
            errors.append(error)
            for unit in self.scoring.units:
                regions[unit].append(maps.get(unit, np.zeros((1, 1), np.int32)).astype(np.int32))
        out = {"frame_id": np.asarray(batch["frame_id"]), "uri": np.asarray(batch["uri"]),
               "image": _as_column(images), "error": np.asarray(errors, dtype=object)}
        for unit, maps in regions.items():
            out[f"regions_{unit}"] = _as_column(maps)
        return out


def _as_column(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack same-shaped arrays; keep a ragged object array otherwise (Ray Data accepts both)."""
    if len({a.shape for a in arrays}) == 1:
        return np.stack(arrays)
    column = np.empty(len(arrays), dtype=object)
    column[:] = arrays
    return column


def decode_frames(batch: dict[str, np.ndarray], data: DataConfig,
                  scoring: ScoringConfig) -> dict[str, np.ndarray]:
    """Function form of :class:`DecodeFrames` for Ray Data task pools."""
    return DecodeFrames(data, scoring)(batch)


def pool_frame_batches(data, batch_rows: int = 1 << 20):
    """The pool split's frames (``frame_id, uri[, mask_uri]``) in batches."""
    from rayal.data import iter_manifest, validate_manifest_schema
    from rayal.data.splits import folder_dataset

    if data.source == "manifest":
        names = validate_manifest_schema(data.manifest).names
        columns = ["frame_id", "uri"] + (["mask_uri"] if "mask_uri" in names else [])
        left = data.limit
        for batch in iter_manifest(data.manifest, batch_size=batch_rows, columns=columns):
            if left is not None:
                batch, left = batch.slice(0, left), left - min(left, batch.num_rows)
            if batch.num_rows:
                yield batch
            if left == 0:
                return
        return
    table = (folder_dataset(data, data.pool_split).to_manifest() if data.source == "folder"
             else frame_source(data).table)
    if data.limit:
        table = table.slice(0, data.limit)
    yield from table.to_batches(batch_rows)


def without_frames(batches, skip: pa.Array | None, batch_rows: int):
    """``batches`` (tables with ``frame_id``) without the frame ids in ``skip``, cut again into
    batches of ``batch_rows`` rows (the last may be shorter); ``skip`` None: unchanged."""
    if skip is None or len(skip) == 0:
        yield from batches
        return
    tables = (pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else b for b in batches)
    yield from rebatch((drop_frames(t, skip) for t in tables), batch_rows)


def drop_frames(table: pa.Table, skip: pa.Array) -> pa.Table:
    """``table`` without the rows whose ``frame_id`` is in ``skip``."""
    import pyarrow.compute as pc

    return table.filter(pc.invert(pc.is_in(table.column("frame_id"), value_set=skip)))


def rebatch(tables, rows: int):
    """``tables`` cut again into tables of ``rows`` rows each (the last may be shorter)."""
    pending: list[pa.Table] = []
    buffered = 0
    for table in tables:
        if table.num_rows:
            pending.append(table)
            buffered += table.num_rows
        while buffered >= rows:
            merged = pa.concat_tables(pending).combine_chunks()
            yield merged.slice(0, rows)
            pending, buffered = [merged.slice(rows)], buffered - rows
    if buffered:
        yield pa.concat_tables(pending).combine_chunks()
