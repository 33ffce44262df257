"""Committee training: bootstrap resamples, identical members, parallel Ray tasks, resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from rayal.config import RayalConfig
from rayal.data.splits import labelled_split
from rayal.models import load_checkpoint
from rayal.train.committee import bootstrap_specs, member_dir, member_specs, read_manifest
from rayal.train.dataset import LabelSpec

from .conftest import tiny_config


def committee_config(tmp_path, members: int, train: dict | None = None, **committee) -> RayalConfig:
    raw = tiny_config(tmp_path, **(train or {})).model_dump(mode="json")
    raw["train"]["committee"] = dict(members=members, **committee)
    raw["scoring"]["mode"] = "committee"
    return RayalConfig.model_validate(raw)


def _specs(config, n):
    return [LabelSpec(f) for f in labelled_split(config.data, "train").frame_ids[:n]]


def _weights(path):
    return load_checkpoint(path)[0].state_dict()


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_bootstrap_resamples_are_seeded_units_and_differ_between_members():
    specs = [LabelSpec(f"f{i}") for i in range(6)] + [
        LabelSpec("p0", "full", (0, 3, 5, 7)), LabelSpec("s0", "dominant", (1, 2), (4, 6))]
    units = 6 + 4 + 2
    a = bootstrap_specs(specs, seed=0, k=1)
    assert a == bootstrap_specs(specs, seed=0, k=1)            # seeded
    b = bootstrap_specs(specs, seed=0, k=2)
    assert a != b and a != bootstrap_specs(specs, seed=1, k=1)   # differs by member and seed
    for sample in (a, b):
        drawn = sum(1 if s.regions is None else len(s.regions) for s in sample)
        assert drawn == units                                  # N draws of N units
        for s in sample:                                       # only labelled units, kept whole
            src = next(x for x in specs if x.frame_id == s.frame_id)
            if s.regions is not None:
                assert set(s.regions) <= set(src.regions)
                pairs = dict(zip(src.regions, src.dominant or [None] * len(src.regions)))
                assert s.dominant is None or all(pairs[r] == d for r, d in zip(s.regions, s.dominant))
        assert len({s.frame_id for s in sample}) < len(specs) or len(sample) > len(specs)


def test_member_specs_lead_on_all_and_bootstrap_off(tmp_path):
    specs = [LabelSpec(f"f{i}") for i in range(8)]
    boot = committee_config(tmp_path, 3)
    assert member_specs(boot, specs, 0) == specs and member_specs(boot, specs, 1) != specs
    assert member_specs(committee_config(tmp_path, 3, lead_on_all=False), specs, 0) != specs
    assert member_specs(committee_config(tmp_path, 3, bootstrap=False), specs, 2) == specs


def test_same_data_same_seed_members_are_identical(ray_local, tmp_path):
    from rayal.pipeline.loop.committee_job import train_committee

    same = committee_config(tmp_path, 2, {"epochs": 1}, bootstrap=False, seed_offset=0,
                            parallel=False)
    manifest, _ = train_committee(same, _specs(same, 6), str(tmp_path / "same"), run_name="same")
    a, b = (_weights(p) for p in read_manifest(manifest))
    assert _same(a, b)
    seeded = committee_config(tmp_path, 2, {"epochs": 1}, bootstrap=False, seed_offset=1,
                              parallel=False)
    manifest, _ = train_committee(seeded, _specs(seeded, 6), str(tmp_path / "seeded"), run_name="sd")
    a, b = (_weights(p) for p in read_manifest(manifest))
    assert not _same(a, b)


def test_parallel_members_on_ray_tasks_equal_one_after_the_other(ray_local, tmp_path):
    from rayal.pipeline.loop.committee_job import train_committee

    kw = dict(cpus_per_member=0.5)
    train = {"epochs": 1, "torch_threads": 1}
    par = committee_config(tmp_path, 3, train, **kw)
    seq = committee_config(tmp_path, 3, train, parallel=False, **kw)
    m_par, rep_par = train_committee(par, _specs(par, 6), str(tmp_path / "par"), run_name="par")
    m_seq, rep_seq = train_committee(seq, _specs(seq, 6), str(tmp_path / "seq"), run_name="seq")
    pids = {r["pid"] for r in rep_par}
    assert os.getpid() not in pids                      # members ran in Ray worker processes
    assert {r["pid"] for r in rep_seq} == {os.getpid()}
    assert [r["status"] for r in rep_par] == ["trained"] * 3
    for p, q in zip(read_manifest(m_par), read_manifest(m_seq)):
        assert _same(_weights(p), _weights(q))
    again, rep = train_committee(par, _specs(par, 6), str(tmp_path / "par"), run_name="par")
    assert again == m_par and [r["status"] for r in rep] == ["kept"] * 3


_CRASH_SCRIPT = """
import json, sys
from rayal.config import RayalConfig
from rayal.data.splits import labelled_split
from rayal.train.dataset import LabelSpec
from rayal.pipeline.loop.committee_job import train_committee
config = RayalConfig.model_validate(json.loads(sys.argv[1]))
specs = [LabelSpec(f) for f in labelled_split(config.data, "train").frame_ids[:6]]
print(json.dumps(train_committee(config, specs, sys.argv[2], run_name="crash")[1]))
"""


def test_resume_after_a_crash_in_member_2_of_4_redoes_only_what_is_missing(ray_local, tmp_path):
    config = committee_config(tmp_path, 4, {"epochs": 12, "steps_per_epoch": 1, "val_limit": 1,
                                            "torch_threads": 1}, parallel=False)
    train_dir = str(tmp_path / "train")
    proc = subprocess.Popen([sys.executable, "-c", _CRASH_SCRIPT, config.model_dump_json(), train_dir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from rayal.train.checkpoint import load_state
    state2 = os.path.join(member_dir(train_dir, 2), "loop_state.json")
    last2 = os.path.join(member_dir(train_dir, 2), "last.pt")
    while not os.path.exists(last2) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)                    # the process dies inside member 2
    proc.wait()
    # where a resume starts: the state inside last.pt (loop_state.json, written just before it,
    # may be one epoch ahead when the kill falls between the two writes)
    crashed = load_state(last2, map_location="cpu")["state"]
    assert not crashed["finished"], "member 2 finished before the kill: raise train.epochs"
    assert not os.path.exists(member_dir(train_dir, 3))
    kept = {k: os.stat(os.path.join(member_dir(train_dir, k), "best.pt")).st_mtime_ns for k in (0, 1)}

    from rayal.pipeline.loop.committee_job import train_committee
    specs = _specs(config, 6)
    manifest, reports = train_committee(config, specs, train_dir, run_name="crash")
    assert [r["status"] for r in reports] == ["kept", "kept", "resumed", "trained"]
    assert reports[2]["epochs_before"] == len(crashed["history"]) >= 1
    for k, mtime in kept.items():                        # finished members were not touched
        assert os.stat(os.path.join(member_dir(train_dir, k), "best.pt")).st_mtime_ns == mtime
    with open(state2) as f:
        resumed = json.load(f)
    # member 2 continued from its last.pt: its first epochs are the crashed run's rows as
    # recorded then (their measured train_seconds included), the rest came after
    n = len(crashed["history"])
    assert resumed["finished"] and resumed["history"][:n] == crashed["history"]
    assert len(resumed["history"]) > n
    assert len(read_manifest(manifest)) == 4
