"""VAAL scoring step: train the VAE + discriminator on the pool, score every pool frame.

    pool frames (folder / manifest / synthetic)  --  labelled ids  /  the rest = unlabelled
      -> train_vaal: each epoch a fresh seeded sample of <= vaal.frames_per_epoch frames per
         side, decoded and resized to vaal.image_size (memory: 2 samples of uint8 images)
      -> every pool frame in streamed batches -> 1 - D(mu(x))
      -> <score_dir>/frames/part-*.parquet (frame_id, vaal_score float32)
         <score_dir>/quarantine/ (frame_id, uri, reason) for frames that cannot be decoded

A plain in-process function (no Ray needed): the AL loop or a Ray job calls it. Decoding
runs in a few threads, one batch ahead of the model.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from tqdm.auto import tqdm

from rayal.config import RayalConfig
from rayal.data import iter_manifest, join_uri, list_files, resize_image, write_bytes
from rayal.pipeline.score.frames import DecodeFrames, FrameSource, frame_source
from rayal.pipeline.score.sink import QUARANTINE_SCHEMA, RollingParquetWriter
from rayal.train.vaal import ImageBatches, train_vaal, vaal_scores

FRAMES_SCHEMA = pa.schema([("frame_id", pa.string()), ("vaal_score", pa.float32())])
DECODE_THREADS = 4
SCORE_BATCH = 64  # frames per scoring forward (eval mode: no gradients, small images)
_ID_BATCH = 65536  # rows per pass over a manifest's ids


@dataclass
class VaalSummary:
    frames_total: int
    frames_scored: int
    frames_quarantined: int
    labelled_frames: int  # labelled ids found in the pool
    labelled_not_in_pool: int  # labelled ids given that the pool does not hold
    unlabelled_frames: int
    train_seconds: float
    score_seconds: float
    history: list = field(default_factory=list)  # per-epoch mean losses
    outputs: dict = field(default_factory=dict)


# ---------------------------------------------------------------- pool rows

class PoolRows:
    """Ordered row access to a :class:`FrameSource` (in-memory table or streamed manifest)."""

    def __init__(self, source: FrameSource):
        self.source, self.num_frames = source, source.num_frames

    def batches(self, batch_size: int) -> Iterator[tuple[list[str], list[str]]]:
        """(frame_ids, uris) chunks of at most ``batch_size`` rows, in pool order."""
        if self.source.table is not None:
            table = self.source.table.slice(0, self.num_frames)
            for start in range(0, table.num_rows, batch_size):
                chunk = table.slice(start, batch_size)
                yield chunk.column("frame_id").to_pylist(), chunk.column("uri").to_pylist()
            return
        left = self.num_frames
        for batch in iter_manifest(self.source.manifest_uri, batch_size, columns=["frame_id", "uri"]):
            if left <= 0:
                return
            batch = batch.slice(0, left)
            left -= batch.num_rows
            yield batch.column("frame_id").to_pylist(), batch.column("uri").to_pylist()

    def take(self, positions: np.ndarray) -> tuple[list[str], list[str]]:
        """(frame_ids, uris) of the rows at sorted ``positions`` (one pass over a manifest)."""
        if self.source.table is not None:
            rows = self.source.table.take(pa.array(positions, pa.int64()))
            return rows.column("frame_id").to_pylist(), rows.column("uri").to_pylist()
        ids, uris, start = [], [], 0
        for batch_ids, batch_uris in self.batches(_ID_BATCH):
            lo, hi = np.searchsorted(positions, [start, start + len(batch_ids)])
            for p in positions[lo:hi] - start:
                ids.append(batch_ids[p])
                uris.append(batch_uris[p])
            start += len(batch_ids)
        return ids, uris

    def positions_of(self, frame_ids: Iterable[str]) -> tuple[np.ndarray, int]:
        """(sorted int64 positions of the pool rows whose id is in ``frame_ids``, number of
        distinct given ids found)."""
        wanted = pa.array(sorted(set(map(str, frame_ids))), pa.string())  # (K,) distinct ids
        positions, found, start = [], set(), 0
        for ids, _ in self.batches(_ID_BATCH):
            hit = np.flatnonzero(pc.is_in(pa.array(ids, pa.string()), value_set=wanted).to_numpy(
                zero_copy_only=False))
            positions.append(hit + start)
            found.update(ids[i] for i in hit)
            start += len(ids)
        return (np.concatenate(positions).astype(np.int64) if positions else np.zeros(0, np.int64)), len(found)


def unlabelled_positions(ranks: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """Pool positions of the unlabelled rows of rank ``ranks`` (0 = first row not in the sorted
    ``labelled`` positions), without materialising every unlabelled position."""
    before = labelled - np.arange(len(labelled))  # unlabelled rows before each labelled one
    return ranks + np.searchsorted(before, ranks, side="right")


# ---------------------------------------------------------------- decoding

class FrameLoader:
    """Decode + resize frames to ``vaal.image_size`` (uint8 (h, w, 3)); errors are returned,
    never raised (a bad frame is skipped in training and quarantined when scored)."""

    def __init__(self, config: RayalConfig, executor: ThreadPoolExecutor):
        self.decoder = DecodeFrames(config.data, config.scoring)
        self.size = tuple(config.vaal.image_size)
        self.executor = executor

    def one(self, frame_id: str, uri: str) -> tuple[np.ndarray | None, str]:
        try:
            return resize_image(self.decoder.load(frame_id, uri), self.size), ""
        except Exception as err:  # noqa: BLE001 - any bad frame is quarantined, never fatal
            text = str(err)
            return None, text if frame_id in text else f"frame {frame_id} ({uri}): {type(err).__name__}: {err}"

    def many(self, frame_ids: list[str], uris: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """-> (images (n_ok, h, w, 3) uint8, ok (n,) bool, error per frame ('' when ok))."""
        results = list(self.executor.map(self.one, frame_ids, uris))
        ok = np.array([image is not None for image, _ in results], bool)
        images = [image for image, _ in results if image is not None]
        stacked = np.stack(images) if images else np.zeros((0, *self.size, 3), np.uint8)
        return stacked, ok, [error for _, error in results]


class FrameSample:
    """Training batches of one side (labelled or unlabelled) for :func:`train_vaal`.

    A re-iterable: each pass draws ``min(cap, count)`` of the side's ``count`` frames with
    ``default_rng([seed, side, pass])``, decodes them and yields shuffled (B, 3, h, w) float
    batches. When the whole side fits under the cap it is decoded once and kept.
    """

    def __init__(self, name: str, count: int, position_of: Callable[[np.ndarray], np.ndarray],
                 rows: PoolRows, loader: FrameLoader, cap: int | None, batch_size: int, seed: int):
        self.name, self.count, self.position_of = name, count, position_of
        self.rows, self.loader, self.batch_size = rows, loader, batch_size
        self.cap = count if cap is None else min(cap, count)
        self.seed = [int(seed), 0 if name == "labelled" else 1]
        self.passes = 0
        self._kept: ImageBatches | None = None

    def _decode(self, ranks: np.ndarray) -> np.ndarray:
        images, ok, errors = self.loader.many(*self.rows.take(self.position_of(np.sort(ranks))))
        if not ok.any():
            raise ValueError(f"none of the {len(ok)} {self.name} frames drawn for VAAL could be "
                             f"decoded, e.g. {errors[0]}")
        return images

    def __iter__(self) -> Iterator[torch.Tensor]:
        rng = np.random.default_rng(self.seed + [self.passes])
        self.passes += 1
        if self.cap == self.count:
            if self._kept is None:
                self._kept = ImageBatches(self._decode(np.arange(self.count)), self.batch_size,
                                          seed=int(rng.integers(1 << 31)))
            return iter(self._kept)
        ranks = rng.choice(self.count, size=self.cap, replace=False)
        return iter(ImageBatches(self._decode(ranks), self.batch_size, seed=int(rng.integers(1 << 31))))


# ---------------------------------------------------------------- the step

def _device(config: RayalConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def _check_empty(score_dir: str) -> None:
    """A score directory already holding a frames / quarantine table would mix two runs."""
    for name in ("frames", "quarantine"):
        try:
            files = list_files(join_uri(score_dir, name))
        except FileNotFoundError:
            continue
        if files:
            raise ValueError(f"{join_uri(score_dir, name)} already holds {len(files)} file(s); "
                             "give the VAAL scoring step an empty score directory")


def _prefetched(batches: Iterator, loader: FrameLoader) -> Iterator[tuple[list, list, Future]]:
    """(ids, uris, future of decoded batch), with the next batch decoding in the background."""
    pending = None
    for ids, uris in batches:
        current = (ids, uris, loader.executor.submit(loader.many, ids, uris))
        if pending is not None:
            yield pending
        pending = current
    if pending is not None:
        yield pending


def _score_pool(model, rows: PoolRows, loader: FrameLoader, score_dir: str,
                progress: bool) -> tuple[int, int, dict]:
    """Score every pool frame in batches; returns (scored, quarantined, outputs)."""
    frames = RollingParquetWriter(join_uri(score_dir, "frames"), schema=FRAMES_SCHEMA)
    quarantine = RollingParquetWriter(join_uri(score_dir, "quarantine"), schema=QUARANTINE_SCHEMA)
    bar = tqdm(total=rows.num_frames, desc="VAAL score", unit="frame", disable=not progress)
    scored = bad = 0
    for ids, uris, future in _prefetched(rows.batches(SCORE_BATCH), loader):
        images, ok, errors = future.result()
        if len(images):
            frames.write(pa.table({
                "frame_id": pa.array([f for f, good in zip(ids, ok) if good], pa.string()),
                "vaal_score": pa.array(vaal_scores(model, images, SCORE_BATCH), pa.float32())}))
        if not ok.all():
            rejected = np.flatnonzero(~ok)
            quarantine.write(pa.table({
                "frame_id": [ids[i] for i in rejected], "uri": [uris[i] for i in rejected],
                "reason": [errors[i] for i in rejected]}, schema=QUARANTINE_SCHEMA))
        scored, bad = scored + int(ok.sum()), bad + int((~ok).sum())
        bar.update(len(ids))
    bar.close()
    frames.close()
    quarantine.close()
    outputs = {name: {"path": w.directory, "rows": w.rows, "bytes": w.bytes}
               for name, w in (("frames", frames), ("quarantine", quarantine))}
    return scored, bad, outputs


def run_vaal_scoring(config: RayalConfig, labelled_frame_ids: Iterable[str], score_dir: str, *,
                     progress: bool = True) -> VaalSummary:
    """Train VAAL on the pool (``labelled_frame_ids`` vs every other pool frame) and write
    ``<score_dir>/frames`` with ``frame_id``, ``vaal_score`` (float32, 1 - D(mu(x)), higher =
    more unlabelled-looking) for every decodable pool frame; undecodable frames go to
    ``<score_dir>/quarantine`` with the reason. Also writes ``vaal_summary.json``.

    Raises ValueError when no labelled id is in the pool, when every pool frame is
    labelled, or when ``score_dir`` already holds a frames / quarantine table.
    """
    _check_empty(score_dir)
    vaal = config.vaal
    rows = PoolRows(frame_source(config.data))
    labelled_ids = set(map(str, labelled_frame_ids))
    labelled, found = rows.positions_of(labelled_ids)
    given = len(labelled_ids)
    if len(labelled) == 0:
        raise ValueError(f"none of the {given} labelled frame ids is in the pool "
                         f"({rows.num_frames} frames); VAAL needs labelled pool frames")
    n_unlabelled = rows.num_frames - len(labelled)
    if n_unlabelled == 0:
        raise ValueError("every pool frame is labelled: VAAL has no unlabelled frame to rank")
    device = _device(config)
    with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="vaal-decode") as executor:
        loader = FrameLoader(config, executor)
        sides = [FrameSample(name, count, position_of, rows, loader, vaal.frames_per_epoch,
                             vaal.batch_size, config.seed)
                 for name, count, position_of in (
                     ("labelled", len(labelled), lambda r: labelled[r]),
                     ("unlabelled", n_unlabelled, lambda r: unlabelled_positions(r, labelled)))]
        start = time.perf_counter()
        model = train_vaal(*sides, vaal, seed=config.seed, device=device, progress=progress)
        trained = time.perf_counter()
        scored, bad, outputs = _score_pool(model, rows, loader, score_dir, progress)
    summary = VaalSummary(
        frames_total=rows.num_frames, frames_scored=scored, frames_quarantined=bad,
        labelled_frames=len(labelled), labelled_not_in_pool=max(given - found, 0),
        unlabelled_frames=n_unlabelled, train_seconds=trained - start,
        score_seconds=time.perf_counter() - trained, history=model.history, outputs=outputs)
    write_bytes(join_uri(score_dir, "vaal_summary.json"), json.dumps(asdict(summary), indent=2).encode())
    return summary
