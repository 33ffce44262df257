"""Jobs API glue without a cluster: token and address resolution, runtime_env, entrypoint, exit codes."""
from __future__ import annotations

import shlex

import pytest
from ray.job_submission import JobStatus

from rayal.cli.submit import job_argv
from rayal.pipeline import jobs_client as jc


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))   # no ~/.ray/auth_token unless a test writes one
    return tmp_path


def test_token_sources_in_rays_order(clean_env, monkeypatch):
    home = clean_env
    assert jc.resolve_token() is None
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text("from-home\n")
    assert (jc.resolve_token().value, jc.resolve_token().source) == ("from-home", f"default token file {home}/.ray/auth_token")
    (home / "t").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(home / "t"))
    assert jc.resolve_token().value == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", " from-env ")
    assert jc.resolve_token().value == "from-env"
    (home / "f").write_text("from-file")
    assert jc.resolve_token(token_file=str(home / "f")).value == "from-file"
    assert jc.resolve_token(token="explicit", token_file=str(home / "f")).source == "--token"


def test_unreadable_or_empty_token_file_is_named(clean_env, monkeypatch):
    with pytest.raises(jc.JobsError, match=r"cannot read the Ray auth token file /nope/token \(--token-file\)"):
        jc.resolve_token(token_file="/nope/token")
    (clean_env / "empty").write_text("\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(clean_env / "empty"))
    with pytest.raises(jc.JobsError, match=r"empty"):
        jc.resolve_token()


def test_address_precedence(clean_env, monkeypatch):
    assert jc.resolve_address() == jc.DEFAULT_ADDRESS
    monkeypatch.setenv("RAY_ADDRESS", "http://from-ray-address:8265")
    assert jc.resolve_address() == "http://from-ray-address:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://api:8265")
    assert jc.resolve_address() == "http://api:8265"
    assert jc.resolve_address("http://explicit:8265") == "http://explicit:8265"


def test_runtime_env_holds_only_what_is_set(tmp_path):
    assert jc.build_runtime_env(None) == {}
    env = jc.build_runtime_env(tmp_path, py_modules=[tmp_path / "rayal"], pip=["rayal==0.1.0"],
                               env_vars={"AWS_REGION": "eu-west-1"}, excludes=["data/"])
    assert env["working_dir"] == str(tmp_path) and env["py_modules"] == [str(tmp_path / "rayal")]
    assert env["excludes"] == jc.DEFAULT_EXCLUDES + ["data/"] and ".venv" in env["excludes"]
    assert env["pip"] == ["rayal==0.1.0"] and env["env_vars"] == {"AWS_REGION": "eu-west-1"}


def test_forwarded_env_copies_storage_settings_but_secrets_only_on_request():
    local = {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_SECRET_ACCESS_KEY": "s", "HOME": "/root"}
    assert jc.forwarded_env(environ=local) == {"AWS_ENDPOINT_URL": "http://minio:9000"}
    assert jc.forwarded_env(["AWS_SECRET_ACCESS_KEY", "X=1"], environ=local) == {
        "AWS_ENDPOINT_URL": "http://minio:9000", "AWS_SECRET_ACCESS_KEY": "s", "X": "1"}
    with pytest.raises(ValueError, match="--env MISSING: not set"):
        jc.forwarded_env(["MISSING"], environ=local)


def test_entrypoint_quotes_arguments():
    argv = ["score", "my configs/a.yaml", "--set", "data.class_names=[a, b]"]
    entry = jc.entrypoint(argv)
    assert shlex.split(entry) == ["python", "-m", "rayal.cli.main", *argv]


def test_exit_code_is_zero_exactly_for_succeeded():
    codes = {s: jc.exit_code(s) for s in JobStatus}
    assert codes[JobStatus.SUCCEEDED] == 0 and sorted(c for s, c in codes.items() if c == 0) == [0]
    assert (codes[JobStatus.FAILED], codes[JobStatus.STOPPED], codes[JobStatus.RUNNING]) == (1, 3, 4)
    assert jc.exit_code("SUCCEEDED") == 0


def test_job_entry_argv():
    assert job_argv("tune", "c.yaml", ["a=1", "b=2"], ["--trials", "4"]) == [
        "tune", "c.yaml", "--set", "a=1", "--set", "b=2", "--trials", "4"]
    assert job_argv("run", None, []) == ["run"]
