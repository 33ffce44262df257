"""`rayal score --resume`: committed part sets survive a kill; a resume scores only the rest and
the finished tables hold every frame of the pool exactly once, with the scores of an
uninterrupted run."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayal.config import load_config
from rayal.data import SyntheticScenes, write_manifest
from rayal.pipeline.score.frames import without_frames
from rayal.pipeline.score.score_job import run_scoring
from rayal.pipeline.score.sink import ScoreSink, open_resume, read_markers

HERE = Path(__file__).parents[1]   # tests/pipeline: scoring.yaml
REPO = HERE.parents[1]
RAYAL = Path(sys.executable).parent / "rayal"
SETTINGS = ["data.synthetic.height=64", "data.synthetic.width=96", "scoring.units=[patch,superpixel]",
            "scoring.superpixel.n_segments=20", "scoring.top_k_regions=3",
            "scoring.embeddings=[frame]", "scoring.mc_samples=4", "ray.cpus_per_actor=0.5",
            "ray.decode_cpus=0.25"]


def _batch(ids: list[str], bad: set[str] = frozenset()) -> pa.Table:
    """A scored batch as FrameBatchScorer returns it: frame rows + nested region rows."""
    region = pa.struct([("unit", pa.string()), ("region_id", pa.int32()), ("score", pa.float32())])
    regions = [[] if f in bad else [{"unit": "patch", "region_id": 0, "score": 0.5},
                                    {"unit": "patch", "region_id": 1, "score": 0.25}] for f in ids]
    return pa.table({"frame_id": ids, "uri": [f"mem://{f}" for f in ids],
                     "error": [f"{f}: cannot decode" if f in bad else None for f in ids],
                     "entropy_mean": [None if f in bad else float(i) for i, f in enumerate(ids)],
                     "regions": pa.array(regions, pa.list_(region))})


def _read(directory: Path, columns=None) -> pa.Table:
    return pq.read_table(directory, columns=columns)


def test_uncommitted_parts_are_deleted_and_committed_ids_read(tmp_path: Path):
    out = str(tmp_path / "s")
    sink = ScoreSink(out, with_embeddings=False, frames_per_part=2, config_hash="h1")
    sink.write(_batch(["a", "b"]))            # part set 0: committed
    sink.write(_batch(["c", "d"], bad={"d"}))  # part set 1: committed (d quarantined)
    sink.write(_batch(["e"]))                 # pending: written, never committed (the "kill")
    assert [m["part"] for m in read_markers(out)] == [0, 1]
    assert any(p.name.endswith(".tmp") for p in (tmp_path / "s" / "frames").iterdir())
    # a part file whose marker never came (killed between the tables and the marker)
    pq.write_table(_read(tmp_path / "s" / "frames").slice(0, 1), tmp_path / "s" / "frames" / "part-00002.parquet")

    state = open_resume(out, "h1")
    assert sorted(state.done.to_pylist()) == ["a", "b", "c", "d"]
    assert state.next_part == 2 and state.rows["frames"] == 3 and state.rows["quarantine"] == 1
    assert sorted(p.name for p in (tmp_path / "s" / "frames").iterdir()) == [
        "part-00000.parquet", "part-00001.parquet"]   # the stray part and the temp file are gone
    sink = ScoreSink(out, with_embeddings=False, frames_per_part=2, resume=state, config_hash="h1")
    sink.write(_batch(["e"]))
    outputs = sink.close()
    frames = _read(tmp_path / "s" / "frames").column("frame_id").to_pylist()
    assert sorted(frames) == ["a", "b", "c", "e"] and outputs["frames"]["rows"] == 4
    assert _read(tmp_path / "s" / "quarantine").column("frame_id").to_pylist() == ["d"]
    assert outputs["regions"]["rows"] == 8 == _read(tmp_path / "s" / "regions").num_rows
    with pytest.raises(ValueError, match="scores of another config"):
        open_resume(out, "h2")


def test_without_frames_rebatches():
    batches = [pa.table({"frame_id": [f"f{i}" for i in range(j, j + 5)]}) for j in (0, 5, 10)]
    out = list(without_frames(iter(batches), pa.array(["f1", "f2", "f7", "f14"]), 4))
    assert [b.num_rows for b in out] == [4, 4, 3]
    assert [f for b in out for f in b.column("frame_id").to_pylist()] == [
        f"f{i}" for i in range(15) if i not in (1, 2, 7, 14)]


def _config(out: Path, *extra: str):
    return load_config(HERE / "scoring.yaml", SETTINGS + [f"output_dir={out}", *extra])


def _sorted_frames(out: Path):
    return _read(out / "frames").to_pandas().sort_values("frame_id").reset_index(drop=True)


def _assert_same_tables(got: Path, want: Path, n: int):
    a, b = _sorted_frames(got), _sorted_frames(want)
    assert len(a) == n and a.frame_id.is_unique and list(a.frame_id) == list(b.frame_id)
    for col in ("entropy_mean", "bald_max", "margin_mean"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-5, atol=1e-6)
    ra, rb = (_read(d / "regions").to_pandas().sort_values(["frame_id", "unit", "region_id"])
              .reset_index(drop=True) for d in (got, want))
    assert len(ra) == len(rb) and (ra.frame_id.values == rb.frame_id.values).all()
    ea = _read(got / "embeddings", ["frame_id"]).column("frame_id").to_pylist()
    assert sorted(ea) == list(b.frame_id)


def test_resume_after_lost_markers_rescores_only_uncommitted(ray_local, tmp_path: Path):
    """Table source (synthetic): the last part sets lose their markers (as if the job died
    before committing them); --resume scores exactly those frames again."""
    full = _config(tmp_path / "full", "data.synthetic.num_frames=12", "scoring.batch_size=3",
                   "scoring.commit_frames=3")
    run_scoring(full, progress=False)
    broken = _config(tmp_path / "broken", "data.synthetic.num_frames=12", "scoring.batch_size=3",
                     "scoring.commit_frames=3")
    shutil.copytree(tmp_path / "full", tmp_path / "broken")   # the same job's output, scored once
    markers = sorted((tmp_path / "broken" / "_commits").iterdir())
    assert len(markers) == 5   # 4 sets of 3 frames + the closing set (an empty quarantine file)
    for marker in markers[2:4]:
        marker.unlink()
    summary = run_scoring(broken, progress=False, resume=True)
    assert (summary.frames_already_done, summary.frames_scored) == (6, 6)
    _assert_same_tables(tmp_path / "broken", tmp_path / "full", 12)
    saved = json.loads((tmp_path / "broken" / "score_summary.json").read_text())
    assert saved["frames_already_done"] == 6 and saved["outputs"]["frames"]["rows"] == 12


def _descendants(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and every process it started (local Ray: GCS, raylet, workers), by pid."""
    others = _descendants(proc)
    proc.kill()
    for p in others:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(30)
    psutil.wait_procs(others, timeout=30)


class StalledFrames:
    """``n`` synthetic frames (seed 0) as a PNG folder (:meth:`SyntheticScenes.write_folder`) and
    a parquet manifest of them; the frames at indices ``stalled`` are FIFOs until restored.

    A FIFO with no writer blocks its reader's open, as a read from a hung network mount does:
    a job cannot finish (however fast the machine) before the test kills it. (A FIFO cannot be
    served to its blocked readers instead: pyarrow's local input stream seeks, which a FIFO
    refuses.)"""

    def __init__(self, root: Path, n: int, stalled: range, height: int = 64, width: int = 96):
        scenes = SyntheticScenes(n, height=height, width=width, seed=0)
        scenes.write_folder(str(root))
        self.ids = [scenes.frame_id(i) for i in range(n)]
        self.paths = [root / "train" / f"{f}.png" for f in self.ids]
        self.stalled = stalled
        for i in stalled:   # the PNG waits aside, a FIFO takes its place
            os.replace(self.paths[i], self.paths[i].with_suffix(".held"))
            os.mkfifo(self.paths[i])
        self.manifest = root / "pool.parquet"
        write_manifest({"frame_id": self.ids, "uri": [str(p) for p in self.paths]}, str(self.manifest))

    def restore(self) -> None:
        """The mount is back: the PNGs replace the FIFOs, atomically (the readers blocked on the
        FIFOs must have been killed)."""
        for i in self.stalled:
            os.replace(self.paths[i].with_suffix(".held"), self.paths[i])


@pytest.mark.slow   # ~100 s on 2 cores: two `rayal score` processes + the reference run
def test_kill_9_then_resume_scores_each_frame_once(session_ray_env, tmp_path: Path):
    """A real `rayal score` over a streamed manifest, SIGKILLed (with its whole local Ray) once
    a part set is committed; `rayal score --resume` finishes it. Frames, regions and
    embeddings equal an uninterrupted run's, each frame once.

    The last frames' reads stall (FIFOs) until the kill, so the job cannot finish before it
    however fast the machine: the kill always lands mid-job."""
    n = 32
    frames = StalledFrames(tmp_path / "frames", n, stalled=range(24, n))
    manifest = frames.manifest

    out = tmp_path / "killed"
    args = [str(RAYAL), "score", str(HERE / "scoring.yaml"), "--no-progress",
            *[a for s in SETTINGS + ["data.source=manifest", f"data.manifest={manifest}",
                                     "scoring.batch_size=2", "scoring.commit_frames=2",
                                     "ray.num_cpus=2", "ray.object_store_memory=100000000",
                                     f"output_dir={out}"] for a in ("--set", s)]]
    env = {**os.environ, "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    log = tmp_path / "killed.log"   # a file, not a pipe: nobody reads it while the test waits
    with log.open("w") as stdout:   # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=stdout, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not read_markers(str(out)):
            assert proc.poll() is None, f"rayal score exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, "no part set committed within 240 s"
            time.sleep(0.05)
    finally:
        _kill_tree(proc)
    frames.restore()   # the mount is back
    committed = sum(m["frames"] + m["quarantined"] for m in read_markers(str(out)))
    assert 0 < committed < n, "the kill came after the job had finished"

    # the resume needs no Ray of its own (its predecessor's died with it): the session's serves
    done = subprocess.run(args + ["--resume"], cwd=REPO, env=session_ray_env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "score_summary.json").read_text())
    assert summary["frames_already_done"] >= committed and summary["frames_quarantined"] == 0
    assert summary["frames_already_done"] + summary["frames_scored"] == n
    assert re.search(rf"frames done before\s+{summary['frames_already_done']}\n", done.stdout)
    assert not list((out / "frames").glob(".*.tmp"))
    want = tmp_path / "uninterrupted"
    run_scoring(_config(want, "data.source=manifest", f"data.manifest={manifest}",
                        "scoring.batch_size=2"), progress=False)
    _assert_same_tables(out, want, n)
