"""The pool's self-supervised encoder (scoring.embedding_model: self_supervised): trained once
and cached, refused settings named, and the scoring job's frame embeddings are that encoder's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from rayal.config import load_config
from rayal.errors import ConfigError
from rayal.pipeline.score import self_supervised as ssl_mod
from rayal.pipeline.score.frames import DecodeFrames, frame_source
from rayal.pipeline.score.score_job import run_scoring
from rayal.pipeline.score.self_supervised import (encoder_key, load_self_supervised_encoder,
                                                  with_self_supervised_encoder)
from rayal.train.simclr import embed_frames

SCORING_YAML = Path(__file__).parents[1] / "scoring.yaml"


def _config(out: Path, *extra: str):
    return load_config(SCORING_YAML, [
        "data.synthetic.num_frames=10", "data.synthetic.height=32", "data.synthetic.width=48",
        "model.encoder=resnet18", "model.encoder_depth=3", "model.decoder_channels=[16,8,8]",
        "scoring.units=[]",
        "scoring.embeddings=[frame]", "scoring.embedding_model=self_supervised",
        "scoring.self_supervised.epochs=2", "scoring.self_supervised.batch_size=4",
        "ray.cpus_per_actor=0.5", "ray.decode_cpus=0.25", f"output_dir={out}", *extra])


def test_trained_once_then_found_in_the_cache(tmp_path: Path, monkeypatch):
    config = _config(tmp_path / "out")
    first = with_self_supervised_encoder(config, str(tmp_path / "cache"))
    path = first.scoring.self_supervised.checkpoint
    assert Path(path).is_file() and Path(path[:-3] + ".json").is_file()
    assert Path(path).name == f"simclr-{encoder_key(config)}.pt"

    def no_training(*args, **kwargs):
        raise AssertionError("the cached encoder was trained again")

    monkeypatch.setattr("rayal.train.simclr.train_simclr", no_training)
    assert with_self_supervised_encoder(config, str(tmp_path / "cache")).scoring \
        .self_supervised.checkpoint == path
    # another setting is another encoder; the task model's embeddings need none
    other = _config(tmp_path / "out", "scoring.self_supervised.temperature=0.2")
    assert encoder_key(other) != encoder_key(config)
    plain = _config(tmp_path / "out", "scoring.embedding_model=model")
    assert with_self_supervised_encoder(plain, str(tmp_path / "cache")) is plain


def test_the_key_follows_the_encoder_not_the_spelling(tmp_path: Path):
    """Settings that give the same encoder share a key; another pool listing does not."""
    config = _config(tmp_path)
    same = [_config(tmp_path, "scoring.self_supervised.image_size=[32,48]"),   # = the frames'
            _config(tmp_path, "scoring.self_supervised.max_frames=1000"),      # > the pool
            _config(tmp_path, "scoring.self_supervised.cache=/elsewhere"),
            _config(tmp_path, "data.synthetic.eval_frames=3")]                # not the pool
    assert {encoder_key(c) for c in same} == {encoder_key(config)}
    other = [_config(tmp_path, "data.synthetic.num_frames=9"),   # one frame fewer
             _config(tmp_path, "data.synthetic.seed=5"),
             _config(tmp_path, "scoring.self_supervised.max_frames=5"),
             _config(tmp_path, "model.encoder_depth=4", "model.decoder_channels=[16,8,8,8]")]
    keys = {encoder_key(c) for c in other}
    assert len(keys) == len(other) and encoder_key(config) not in keys


def test_settings_it_cannot_serve_are_refused_by_name(tmp_path: Path):
    with pytest.raises(ValueError, match=r"scoring.embeddings to \[frame\]"):
        _config(tmp_path, "scoring.embeddings=[frame,region]")
    folder = _config(tmp_path, "data.source=folder", f"data.root={tmp_path}")
    with pytest.raises(ConfigError, match="scoring.self_supervised.image_size"):
        ssl_mod.ssl_image_size(folder)
    bad = tmp_path / "not_an_encoder.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(ConfigError, match="not_an_encoder.pt is not a rayal SimCLR encoder"):
        load_self_supervised_encoder(str(bad))
    given = _config(tmp_path, f"scoring.self_supervised.checkpoint={tmp_path / 'nope.pt'}")
    with pytest.raises(ConfigError, match=r"checkpoint .*nope.pt does not exist"):
        with_self_supervised_encoder(given, str(tmp_path / "cache"))   # before any scoring
    with pytest.raises(ValueError, match=r"scoring.self_supervised.image_size must be"):
        _config(tmp_path, "scoring.self_supervised.image_size=[2,3]")


def test_scoring_writes_the_encoders_frame_embeddings(ray_local, tmp_path: Path):
    config = _config(tmp_path / "scores")
    summary = run_scoring(config, progress=False)
    assert summary.frames_scored == 10
    emb = pq.read_table(tmp_path / "scores" / "embeddings").to_pandas().set_index("frame_id")
    assert (emb.unit == "frame").all() and len(emb) == 10
    # the job trained the encoder into <output_dir>/ssl_cache; recompute two frames by hand
    (path,) = (tmp_path / "scores" / "ssl_cache").glob("simclr-*.pt")
    net, size = load_self_supervised_encoder(str(path))
    source = frame_source(config.data).table
    decode = DecodeFrames(config.data, config.scoring)
    for frame_id, uri in zip(source.column("frame_id").to_pylist()[:2], source.column("uri").to_pylist()):
        x = torch.from_numpy(decode.load(frame_id, uri)).permute(2, 0, 1)[None].float() / 255
        want = embed_frames(net, x, size)[0].numpy()
        np.testing.assert_allclose(np.asarray(emb.loc[frame_id, "embedding"], np.float32), want,
                                   rtol=2e-3, atol=2e-3)   # stored as float16
    assert len(emb.embedding.iloc[0]) == net.encoder.out_channels[-1]
