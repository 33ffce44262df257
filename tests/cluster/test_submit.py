"""``rayal submit`` / ``rayal jobs`` against a real token-authenticated Ray head on loopback,
and what ``rayal submit`` refuses before it contacts any cluster."""
from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

# The demo run submitted to the cluster: configs/demo.yaml's whole AL loop (score, select, oracle,
# retrain, evaluate), shrunk to one round on 10 tiny frames so the job takes about a minute.
DEMO_COMMAND = ["run", "configs/demo.yaml", "--no-progress",
                "--set", "data.synthetic.num_frames=10", "--set", "data.synthetic.height=32",
                "--set", "data.synthetic.width=48", "--set", "data.synthetic.eval_frames=4",
                "--set", "train.epochs=1", "--set", "selection.budget=4", "--set", "loop.initial=4",
                "--set", "loop.rounds=1", "--set", "loop.max_labelled=null", "--set", "loop.full_miou=0.5",
                "--set", "loop.baseline=null", "--set", "loop.plot_frames=1"]
# Valid config, but its manifest does not exist: the job itself fails on the cluster.
MISSING_MANIFEST = "/nonexistent/rayal-pool/manifest.parquet"
FAILING_COMMAND = ["score", "configs/demo.yaml", "--no-progress", "--set", "data.source=manifest",
                   "--set", f"data.manifest={MISSING_MANIFEST}"]
# Tests that use the session's Ray head (started once): about 3 minutes on a 2-core machine.
on_cluster = pytest.mark.slow


def job_id_of(stderr: str) -> str:
    match = re.search(r"submitted (\S+) to", stderr)
    assert match, stderr
    return match.group(1)


@on_cluster
def test_submit_demo_succeeds(ray_head, tmp_path):
    out = tmp_path / "demo"
    done = ray_head.rayal("submit", "--address", ray_head.dashboard, "--", *DEMO_COMMAND,
                          "--set", f"output_dir={out}", "--set", f"pool.state_dir={tmp_path / 'pool'}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "SUCCEEDED" in done.stderr
    assert "learning curve" in done.stdout                     # the job's log, streamed
    rounds = pq.read_table(out / "rounds.parquet").to_pylist()
    assert [r["round"] for r in rounds] == [0, 1] and [r["labelled_units"] for r in rounds] == [4, 8]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_miou"] == rounds[-1]["miou"]
    assert (out / "config.yaml").is_file() and (out / "learning_curve.png").is_file()

    job = job_id_of(done.stderr)
    listed = ray_head.rayal("jobs", "list", "--json", "--address", ray_head.dashboard)
    assert listed.returncode == 0, listed.stderr
    row = next(j for j in json.loads(listed.stdout) if j["submission_id"] == job)
    assert row["status"] == "SUCCEEDED" and "rayal.cli.main run configs/demo.yaml" in row["entrypoint"]
    status = ray_head.rayal("jobs", "status", job, "--address", ray_head.dashboard)
    assert status.returncode == 0 and f"job {job} SUCCEEDED" in status.stdout


@on_cluster
def test_submit_failing_job_exits_nonzero_and_logs_the_error(ray_head, tmp_path):
    done = ray_head.rayal("submit", "--address", ray_head.dashboard, "--",
                          *FAILING_COMMAND, "--set", f"output_dir={tmp_path / 'bad'}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"manifest not found: {MISSING_MANIFEST}" in done.stdout   # streamed driver log
    assert "FAILED (driver exit code 2)" in done.stderr
    logs = ray_head.rayal("jobs", "logs", job_id_of(done.stderr), "--address", ray_head.dashboard)
    assert logs.returncode == 0 and f"manifest not found: {MISSING_MANIFEST}" in logs.stdout


@on_cluster
def test_stop_a_running_job(ray_head, tmp_path):
    started = ray_head.rayal("submit", "--no-wait", "--address", ray_head.dashboard, "--",
                             "score", "configs/demo.yaml", "--no-progress",
                             "--set", f"output_dir={tmp_path / 'long'}")
    assert started.returncode == 0, started.stderr
    job = job_id_of(started.stderr)
    stopped = ray_head.rayal("jobs", "stop", job, "--address", ray_head.dashboard)
    assert stopped.returncode == 0 and f"job {job} STOPPED" in stopped.stdout, stopped.stdout + stopped.stderr
    followed = ray_head.rayal("jobs", "logs", job, "--follow", "--address", ray_head.dashboard)
    assert followed.returncode == 3                       # the exit code mirrors STOPPED
    again = ray_head.rayal("jobs", "stop", job, "--address", ray_head.dashboard)
    assert again.returncode == 0 and "had already ended: STOPPED" in again.stdout


@on_cluster
def test_token_is_required_and_checked(ray_head, tmp_path):
    no_token = ray_head.rayal("jobs", "list", "--address", ray_head.dashboard,
                              env={"RAY_AUTH_TOKEN": "", "HOME": str(tmp_path)})
    assert no_token.returncode == 2 and "requires a token" in no_token.stderr
    wrong = ray_head.rayal("jobs", "list", "--address", ray_head.dashboard, "--token", "not-the-token")
    assert wrong.returncode == 2 and "rejected the token from --token" in wrong.stderr
    token_file = tmp_path / "token"
    token_file.write_text(ray_head.token + "\n")
    ok = ray_head.rayal("jobs", "list", "--address", ray_head.dashboard, "--token-file", token_file,
                        env={"RAY_AUTH_TOKEN": ""})
    assert ok.returncode == 0 and "SUBMISSION ID" in ok.stdout


@on_cluster
def test_unknown_job_is_named(ray_head):
    done = ray_head.rayal("jobs", "status", "rayal-no-such-job", "--address", ray_head.dashboard)
    assert done.returncode == 2 and "rayal-no-such-job" in done.stderr


# --- checked locally, before any upload: no cluster needed (the address is unreachable) -----------
UNREACHABLE = "http://127.0.0.1:9"


def test_bad_config_is_refused_before_submitting(capsys):
    from rayal.cli.main import main

    code = main(["submit", "--address", UNREACHABLE, "--", "score", "configs/demo.yaml",
                 "--set", "scoring.mc_samples=-1"])
    err = capsys.readouterr().err
    assert code == 2 and "scoring.mc_samples" in err and "cannot reach" not in err


def test_unknown_command_and_nesting_are_refused(capsys):
    from rayal.cli.main import main

    with pytest.raises(SystemExit) as usage:
        main(["submit", "--address", UNREACHABLE, "--", "scroe", "configs/demo.yaml"])
    assert usage.value.code == 2 and "invalid choice: 'scroe'" in capsys.readouterr().err
    assert main(["submit", "--address", UNREACHABLE, "--", "jobs", "list"]) == 2
    assert "runs on the submitting machine" in capsys.readouterr().err
    assert main(["submit", "--address", UNREACHABLE]) == 2
    assert "no command to submit" in capsys.readouterr().err


def test_config_outside_the_working_dir_is_refused(tmp_path, capsys):
    from rayal.cli.main import main

    (tmp_path / "c.yaml").write_text("seed: 1\n")
    (tmp_path / "wd").mkdir()
    code = main(["submit", "--address", UNREACHABLE, "--working-dir", str(tmp_path / "wd"), "--",
                 "score", str(tmp_path / "c.yaml")])
    assert code == 2 and f"config {tmp_path / 'c.yaml'} is outside the working dir" in capsys.readouterr().err


def test_unreachable_cluster_is_named(capsys):
    from rayal.cli.main import main

    code = main(["submit", "--address", UNREACHABLE, "--", *DEMO_COMMAND, "--set", "output_dir=/tmp/x"])
    assert code == 2 and f"cannot reach the Ray Jobs API at {UNREACHABLE}" in capsys.readouterr().err


def test_every_compare_config_is_validated_and_placed(tmp_path, capsys):
    from rayal.cli import submit

    wd = tmp_path / "wd"
    (wd / "cfg").mkdir(parents=True)
    (wd / "cfg" / "a.yaml").write_text("seed: 1\n")
    (wd / "cfg" / "b.yaml").write_text("seed: 2\nscoring: {mc_samples: -1}\n")
    argv = ["compare", str(wd / "cfg" / "a.yaml"), str(wd / "cfg" / "b.yaml")]
    with pytest.raises(ValueError, match="mc_samples"):         # the second config is checked too
        submit._check_command(argv, validate=True)
    (wd / "cfg" / "b.yaml").write_text("seed: 2\n")
    ns, configs = submit._check_command(argv, validate=True)
    assert [c.seed for c in configs] == [1, 2]
    assert submit._place_config(argv, ns, wd) == ["compare", "cfg/a.yaml", "cfg/b.yaml"]
    (tmp_path / "c.yaml").write_text("seed: 3\n")
    outside = argv + [str(tmp_path / "c.yaml")]
    with pytest.raises(ValueError, match="outside the working dir"):
        submit._place_config(outside, submit._check_command(outside, validate=True)[0], wd)
