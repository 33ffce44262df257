"""The pool's self-supervised encoder (``scoring.embedding_model: self_supervised``): trained
once per data + setting with SimCLR (:mod:`rayal.train.simclr`), kept in a cache, loaded by
every scoring actor, which then writes SimCLR frame embeddings instead of the task model's.

    config = with_self_supervised_encoder(config, default_cache)   # trains or finds it
    net, size = load_self_supervised_encoder(config.scoring.self_supervised.checkpoint)

The encoder sees no labels, only the pool split's frames (at most ``max_frames`` of them, a
seeded sample), so it is the same for every strategy and seed of a comparison; its seed is
``scoring.self_supervised.seed``. Training runs in the calling process on ``device``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time

import numpy as np
import torch

from rayal.config.sections import RayalConfig
from rayal.data.io import exists, has_scheme, join_uri, read_bytes, write_bytes
from rayal.errors import ConfigError

FORMAT = "rayal-simclr"
KEY_VERSION = 1   # bump when training (augmentations, head, schedule) changes what a key yields
MAX_TRAINING_BYTES = 16 * 2**30   # the decoded training frames held in memory
_NOT_IN_KEY = ("cache", "checkpoint", "image_size", "max_frames")


def ssl_image_size(config: RayalConfig) -> tuple[int, int]:
    """[H, W] the encoder sees: ``scoring.self_supervised.image_size``, else ``data.image_size``,
    else the synthetic scenes' size.

    Raises:
        ConfigError: neither is set for a folder or manifest pool (frames of any size).
    """
    ssl, data = config.scoring.self_supervised, config.data
    if ssl.image_size is not None:
        return tuple(ssl.image_size)
    if data.image_size is not None:
        return tuple(data.image_size)
    if data.source == "synthetic":
        return (data.synthetic.height, data.synthetic.width)
    raise ConfigError("scoring.embedding_model 'self_supervised' needs a fixed frame size: set "
                      "scoring.self_supervised.image_size (or data.image_size)")


def _pool_rows(config: RayalConfig):
    """The pool split's ``(frame_id, uri)`` rows, streamed (``data.limit`` applied)."""
    from rayal.pipeline.score.frames import pool_frame_batches

    for batch in pool_frame_batches(config.data):
        yield from zip(batch.column("frame_id").to_pylist(), batch.column("uri").to_pylist())


def pool_listing(config: RayalConfig) -> tuple[int, str]:
    """(frames, digest) of the pool split's ``(frame_id, uri)`` listing, streamed: a pool whose
    frames are added, removed or moved gets another digest (a file rewritten in place under
    the same URI does not)."""
    digest, count = hashlib.sha256(), 0
    for frame_id, uri in _pool_rows(config):
        uri = uri if has_scheme(uri) else os.path.abspath(uri)
        digest.update(f"{frame_id}\0{uri}\n".encode())
        count += 1
    return count, digest.hexdigest()


def encoder_key(config: RayalConfig, listing: str | None = None, frames: int | None = None) -> str:
    """Hash of what the encoder depends on: the pool's listing (:func:`pool_listing`), the frame
    size it is decoded at and trained at, how many frames it trains on, the encoder, the SimCLR
    setting and :data:`KEY_VERSION`; settings that give the same encoder give the same key."""
    if listing is None or frames is None:
        frames, listing = pool_listing(config)
    data = config.data
    what = {"version": KEY_VERSION, "listing": listing,
            "decode": list(data.image_size) if data.image_size else None,
            "synthetic": (data.synthetic.model_dump(mode="json", exclude={"eval_frames"})
                          if data.source == "synthetic" else None),
            "frames": min(frames, config.scoring.self_supervised.max_frames),
            "encoder": config.model.encoder, "depth": config.model.encoder_depth,
            "size": list(ssl_image_size(config)),
            "ssl": config.scoring.self_supervised.model_dump(mode="json", exclude=set(_NOT_IN_KEY))}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def with_self_supervised_encoder(config: RayalConfig, default_cache: str, *,
                                 progress: bool = False) -> RayalConfig:
    """``config`` with ``scoring.self_supervised.checkpoint`` set: the cached encoder of this
    data + setting, trained now if the cache lacks it. Unchanged when the embedding model is the
    task model or a checkpoint is already given."""
    sc = config.scoring
    ssl = sc.self_supervised
    if sc.embedding_model != "self_supervised":
        return config
    if ssl.checkpoint:   # a missing encoder is refused now, not in a scoring actor (an existence
        if not exists(ssl.checkpoint):   # check: run_scoring passes here every round of a run)
            raise ConfigError(f"scoring.self_supervised.checkpoint {ssl.checkpoint} does not exist")
        return config
    cache = ssl.cache or default_cache
    if not has_scheme(cache):
        cache = os.path.abspath(cache)
    count, listing = pool_listing(config)
    path = join_uri(cache, f"simclr-{encoder_key(config, listing, count)}.pt")
    if not exists(path):
        _train_and_save(config, count, path, progress)
    ssl = ssl.model_copy(update={"checkpoint": path, "cache": cache})
    return config.model_copy(update={"scoring": sc.model_copy(update={"self_supervised": ssl})})


def training_frames(config: RayalConfig, count: int,
                    size: tuple[int, int]) -> tuple[np.ndarray, int]:
    """(N, H, W, 3) uint8 frames at ``size``: a seeded sample of at most ``max_frames`` of the
    pool's ``count`` frames (:func:`pool_listing`), streamed; frames that cannot be read are
    skipped (scoring quarantines them). Returns the frames and how many were skipped."""
    from rayal.data.decode import resize_image
    from rayal.data.errors import FrameError
    from rayal.pipeline.score.frames import DecodeFrames

    ssl = config.scoring.self_supervised
    need = min(count, ssl.max_frames) * size[0] * size[1] * 3
    if need > MAX_TRAINING_BYTES:
        raise ConfigError(f"SimCLR would hold {min(count, ssl.max_frames)} frames at "
                          f"{size[0]}x{size[1]} in memory ({need / 2**30:.1f} GiB): lower "
                          "scoring.self_supervised.max_frames or image_size")
    keep = None
    if count > ssl.max_frames:
        keep = set(np.random.default_rng(ssl.seed).choice(count, ssl.max_frames, replace=False).tolist())
    rows = [row for i, row in enumerate(_pool_rows(config)) if keep is None or i in keep]
    decode = DecodeFrames(config.data, config.scoring)
    images, skipped = [], 0
    for frame_id, uri in rows:
        try:
            images.append(resize_image(decode.load(frame_id, uri), size))
        except FrameError:
            skipped += 1
    if len(images) < 2:
        raise ConfigError(f"scoring.embedding_model 'self_supervised': {len(images)} readable "
                          f"pool frame(s) ({skipped} unreadable); SimCLR needs at least 2")
    return np.stack(images), skipped


def _train_and_save(config: RayalConfig, count: int, path: str, progress: bool) -> None:
    from rayal.models.device import resolve_device
    from rayal.train.simclr import train_simclr

    ssl = config.scoring.self_supervised
    size = ssl_image_size(config)
    frames, skipped = training_frames(config, count, size)

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    # said even without progress: training can take minutes before the first round
    say(f"self-supervised encoder: SimCLR, {ssl.epochs} epochs on {len(frames)} pool frames "
        f"at {size[0]}x{size[1]}, once (kept in {path})")
    log = say if progress else None
    tic = time.perf_counter()
    net, losses = train_simclr(
        frames, encoder=config.model.encoder, depth=config.model.encoder_depth, size=size,
        epochs=ssl.epochs, batch_size=ssl.batch_size, lr=ssl.lr, temperature=ssl.temperature,
        projection_dim=ssl.projection_dim, seed=ssl.seed, device=str(resolve_device(config.device)),
        log=log)
    record = {"format": FORMAT, "encoder": config.model.encoder,
              "depth": config.model.encoder_depth, "projection_dim": ssl.projection_dim,
              "size": list(size), "frames": len(frames), "skipped": skipped, "losses": losses,
              "seconds": time.perf_counter() - tic, "key": path.rsplit("simclr-", 1)[-1][:-3]}
    say(f"self-supervised encoder: trained in {record['seconds']:.0f} s, NT-Xent "
        f"{losses[0]:.3f} -> {losses[-1]:.3f} (chance {np.log(2 * min(ssl.batch_size, len(frames)) - 1):.3f})")
    buffer = io.BytesIO()
    torch.save({**record, "state_dict": {k: v.cpu() for k, v in net.state_dict().items()}}, buffer)
    _write_atomic(path, buffer.getvalue())
    _write_atomic(path[:-3] + ".json", json.dumps(record, indent=1).encode())


def _write_atomic(path: str, data: bytes) -> None:
    """Object stores publish a put whole; a local file is written aside and renamed."""
    if has_scheme(path):
        write_bytes(path, data)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load_self_supervised_encoder(path: str, device: str | torch.device = "cpu"):
    """(SimCLRNet in eval mode on ``device``, its input [H, W]) from a file this module wrote.

    Raises:
        ConfigError: the file is not a rayal SimCLR encoder (naming the path).
    """
    from rayal.data.errors import FrameError
    from rayal.train.simclr import SimCLRNet

    try:
        data = read_bytes(path)
    except FrameError:
        raise ConfigError(f"scoring.self_supervised.checkpoint {path} does not exist") from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported with its path
        raise ConfigError(f"scoring.self_supervised.checkpoint {path}: cannot read it "
                          f"({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"scoring.self_supervised.checkpoint {path} is not a rayal SimCLR "
                          "encoder")
    net = SimCLRNet(state["encoder"], state["depth"], state["projection_dim"])
    net.load_state_dict(state["state_dict"])
    return net.to(device).eval(), tuple(state["size"])
