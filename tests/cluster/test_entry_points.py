"""jobs/*.py: plain `ray job submit -- python jobs/X.py --config C --set K=V` entry points forward to
`rayal X C --set K=V` and exit with its code."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from rayal.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in (REPO / "jobs").glob("*.py") if "job_entry(" in p.read_text())


def registered() -> set[str]:
    action = next(a for a in build_parser()._actions if a.dest == "command")
    return set(action.choices)


def test_entry_points_exist_for_the_cluster_commands():
    assert {p.stem for p in SCRIPTS} >= {"run", "tune", "train"}
    for script in SCRIPTS:   # each forwards to the subcommand it is named after
        assert f'job_entry("{script.stem}")' in script.read_text()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_entry_point_forwards_config_and_overrides(script, monkeypatch):
    """The script itself runs (as `python jobs/X.py`); the command it dispatches to is recorded
    instead of run: the parsed arguments are what `rayal X configs/demo.yaml --set ...` gives."""
    from rayal.cli import main as cli

    if script.stem not in registered():
        pytest.skip(f"`rayal {script.stem}` is not registered yet")
    seen = []
    monkeypatch.setitem(cli.COMMANDS, script.stem, lambda args: seen.append(args) or 7)
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", [str(script), "--config", "configs/demo.yaml",
                                      "--set", "seed=3", "--set", "train.epochs=1"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 7                     # the command's exit code is the script's
    (args,) = seen
    assert (args.command, args.config, args.overrides) == (script.stem, "configs/demo.yaml",
                                                           ["seed=3", "train.epochs=1"])
