"""Ray core's constructor-argument false alarm stays off the console of `rayal score`; every
other stderr line passes (see rayal/pipeline/score/ray_log_filter.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rayal.pipeline.score.ray_log_filter import is_false_alarm

HERE = Path(__file__).parents[1]   # tests/pipeline: scoring.yaml
REPO = HERE.parents[1]
RAYAL = Path(sys.executable).parent / "rayal"
ALARM = (b"[2026-11-29 19:09:11,613 E 5424 5424] core_worker.cc:2465: Actor with class name: "
         b"'MapWorker(MapBatches(FrameBatchScorer))' and ID: 'ddc54bd96986585b3724b4ce01000000' has "
         b"constructor arguments in the object store and max_restarts > 0. If the arguments in the "
         b"object store go out of scope or are lost, the actor restart will fail. See "
         b"https://github.com/ray-project/ray/issues/53727 for more details.")


def test_only_the_ray_data_false_alarm_matches():
    assert is_false_alarm(ALARM)
    # the same warning for an actor of the user's own (not a Ray Data pool actor) is kept
    assert not is_false_alarm(ALARM.replace(b"MapWorker(MapBatches(FrameBatchScorer))", b"Trainer"))
    assert not is_false_alarm(b"[2026-11-29 19:09:12,000 E 1 1] core_worker.cc:900: "
                              b"Failed to connect to the raylet")


def test_filter_drops_the_alarm_at_the_file_descriptor_and_keeps_the_rest():
    """A real process writes to fd 2 as the C++ logger does (raw os.write, the alarm split over
    two writes), and through sys.stderr as tqdm does (a partial line with carriage returns)."""
    code = textwrap.dedent(f"""
        import os, sys, time
        from rayal.pipeline.score.ray_log_filter import ray_data_false_alarm_filtered
        alarm = {ALARM!r}
        with ray_data_false_alarm_filtered():
            sys.stderr.write("scoring:  50%|##  | 2/4\\r"); sys.stderr.flush()
            os.write(2, alarm[:60]); os.write(2, alarm[60:] + b"\\n")
            os.write(2, b"[2026 E 1 1] core_worker.cc:900: a real error\\n")
            sys.stderr.write("scoring: 100%|####| 4/4\\n"); sys.stderr.flush()
            os.write(2, b"no newline at the end")
        sys.stderr.write("|after\\n")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (b"scoring:  50%|##  | 2/4\r[2026 E 1 1] core_worker.cc:900: a real error\n"
                           b"scoring: 100%|####| 4/4\nno newline at the end|after\n")


@pytest.mark.slow   # its own local Ray in a subprocess: ~1 min on 2 idle cores
def test_rayal_score_prints_no_core_worker_line(tmp_path: Path):
    """`rayal score` on a tiny synthetic pool, its own local Ray: nothing on the console that
    names ``core_worker`` (Ray Data's actor pool made Ray log an ERROR line before the filter)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    settings = ["data.synthetic.num_frames=8", "data.synthetic.height=32", "data.synthetic.width=32",
                "scoring.units=[patch]", "scoring.mc_samples=2", "scoring.batch_size=4",
                "scoring.embeddings=[]", "ray.num_cpus=2", "ray.cpus_per_actor=0.5",
                "ray.decode_cpus=0.25", "ray.object_store_memory=100000000",
                f"output_dir={tmp_path / 'scores'}"]
    done = subprocess.run([str(RAYAL), "score", str(HERE / "scoring.yaml"), "--no-progress",
                           *[a for s in settings for a in ("--set", s)]],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "frames scored" in done.stdout
    assert [line for line in output.splitlines() if "core_worker" in line] == []
