"""Committees through the pipeline: the scoring actor's committee rows, and ``rayal run``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from rayal.config import config_from_dict
from rayal.models import model_from_config
from rayal.scoring import measures as M
from rayal.train.checkpoint import write_checkpoint
from rayal.train.committee import read_manifest, write_manifest

ROOT = Path(__file__).resolve().parents[3]
USUAL = {"round", "strategy", "seed", "selected_units", "labelled_units", "labelled_fraction",
         "clicks", "cum_clicks", "miou", "per_class_iou", "selected_class_hist", "quarantined",
         "seconds_score", "seconds_select", "seconds_annotate", "seconds_train", "seconds_eval",
         "checkpoint"}


def test_actor_scores_a_committee_as_its_members_combined_by_hand(tmp_path):
    from rayal.pipeline.score.frames import DecodeFrames, pool_frame_batches
    from rayal.pipeline.score.scoring_pool import _ScoringActor

    raw = {"seed": 0, "device": "cpu", "output_dir": str(tmp_path / "out"),
           "data": {"num_classes": 5, "synthetic": {"num_frames": 4, "height": 32, "width": 48}},
           "model": {"arch": "Unet", "encoder": "resnet18", "encoder_depth": 3,
                     "decoder_channels": [16, 8, 8]},
           "scoring": {"mode": "committee", "mc_samples": 0, "units": [], "aggregate": ["mean"],
                       "measures": ["entropy", "bald", "vote_entropy", "variance",
                                    "area_disagreement"]},
           "train": {"committee": {"members": 3}}}
    config = config_from_dict(raw)
    members = [model_from_config(config.model, 5, seed=s).eval() for s in (11, 12, 13)]
    paths = [write_checkpoint(str(tmp_path / f"m{k}.pt"), m) for k, m in enumerate(members)]
    manifest = write_manifest(str(tmp_path), paths)
    assert read_manifest(manifest) == paths
    config = config_from_dict(dict(raw, model=dict(raw["model"], checkpoint=manifest)))
    part = next(iter(pool_frame_batches(config.data, batch_rows=4)))
    batch = {"frame_id": part.column("frame_id").to_numpy(zero_copy_only=False),
             "uri": part.column("uri").to_numpy(zero_copy_only=False)}
    table = _ScoringActor(1).score(config.model_dump_json(), batch)
    decoded = DecodeFrames(config.data, config.scoring)(batch)
    x = torch.from_numpy(np.stack(decoded["image"])).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        probs = torch.stack([torch.softmax(m(x), dim=1) for m in members])
    expected = {"entropy_mean": M.entropy(probs.mean(0)), "bald_mean": M.bald(probs),
                "vote_entropy_mean": M.vote_entropy(probs), "variance_mean": M.variance(probs)}
    for name, value in expected.items():
        got = np.asarray(table.column(name).to_pylist())
        assert np.allclose(got, value.flatten(1).mean(1).numpy(), atol=1e-4), name
    got = np.asarray(table.column("area_disagreement").to_pylist())
    assert np.allclose(got, M.area_disagreement(probs).numpy(), atol=1e-5)


def test_rayal_run_demo_with_a_committee_of_3(session_ray_env, tmp_path):
    """The outside contract (short: 12 frames, one AL round, one epoch, no reference training)."""
    out = tmp_path / "demo"
    cmd = [str(Path(sys.executable).with_name("rayal")), "run", "configs/demo.yaml",
           "--set", "train.committee.members=3", "--set", "scoring.mode=committee",
           "--set", "loop.rounds=1", "--set", "loop.baseline=null", "--set", "loop.full_miou=0.5",
           "--set", "train.epochs=1", "--set", "data.synthetic.num_frames=12",
           "--set", "data.synthetic.eval_frames=4", "--set", "selection.budget=4",
           "--set", "loop.initial=4", "--set", "loop.max_labelled=null",
           "--set", f"output_dir={out}", "--no-progress"]
    done = subprocess.run(cmd, cwd=ROOT, env=session_ray_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    rounds = pq.read_table(out / "rounds.parquet")
    assert USUAL <= set(rounds.column_names) and rounds.num_rows == 2
    for manifest in rounds.column("checkpoint").to_pylist():
        assert manifest.endswith("committee.json") and len(read_manifest(manifest)) == 3
    assert all(0.0 <= m <= 1.0 for m in rounds.column("miou").to_pylist())
