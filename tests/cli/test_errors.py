"""Every user-facing error of the real ``rayal`` command (a subprocess): exit 2, ONE line
``rayal <cmd>: error: ...`` naming the field or item, and no traceback unless ``--debug``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

RAYAL = str(Path(sys.executable).with_name("rayal"))
TINY = {
    "seed": 0, "device": "cpu",
    "model": {"arch": "Unet", "encoder": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 8]},
    "scoring": {"measures": ["entropy"], "mc_samples": 0, "units": ["patch"], "grid": [2, 2], "batch_size": 4},
    "selection": {"strategy": "entropy", "params": {"aggregate": "mean"}, "budget": 2},
    "train": {"epochs": 1, "batch_size": 2, "patience": None},
    "loop": {"initial": 2, "rounds": 1, "full_miou": 0.5, "plot_frames": 0},
    "ray": {"num_cpus": 2, "cpus_per_actor": 0.5, "decode_cpus": 0.25},
}


def rayal(tmp_path: Path, *argv: str, env: dict | None = None) -> tuple[int, str]:
    """Run ``rayal ARGV`` in ``tmp_path`` (environment ``env``, default this process's); returns
    (exit status, stderr)."""
    env = dict(os.environ if env is None else env, RAY_DEDUP_LOGS="0")
    env.pop("RAYAL_DEBUG", None)
    proc = subprocess.run([RAYAL, *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    return proc.returncode, proc.stderr


def one_error(err: str, command: str) -> str:
    """The single ``rayal <command>: error:`` line of ``err`` (asserting there is exactly one
    and no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"rayal {command}: error: "), err
    return lines[0]


def write_config(tmp_path: Path, name: str = "c.yaml", **sections) -> str:
    config = {**TINY, "output_dir": str(tmp_path / "out"),
              "pool": {"project": f"errors-{tmp_path.name}", "state_dir": str(tmp_path / "pool")},
              **sections}
    (tmp_path / name).write_text(yaml.safe_dump(config))
    return name


def folder(root: Path, bad_mask: str | None = None) -> dict:
    """A tiny CamVid-style folder; ``bad_mask``: that train frame's mask has the wrong size."""
    for split, n in (("train", 4), ("val", 2)):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            rng = np.random.default_rng(i)
            Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(root / split / f"f{i}.png")
            mask = np.zeros((32, 48), np.uint8)
            mask[16:] = 1
            if split == "train" and f"f{i}" == bad_mask:
                mask = np.zeros((20, 20), np.uint8)
            Image.fromarray(mask, mode="L").save(root / f"{split}annot" / f"f{i}.png")
    return {"source": "folder", "root": str(root), "images": "{split}", "masks": "{split}annot",
            "pool_split": "train", "eval_split": "val", "num_classes": 3}


def test_strategy_switched_by_set_names_the_leftover_params(tmp_path):
    path = write_config(tmp_path, data={"num_classes": 8})
    code, err = rayal(tmp_path, "run", path, "--no-progress", "--set", "selection.strategy=random")
    line = one_error(err, "run")
    assert code == 2 and "selection.params" in line and "'aggregate'" in line and "random" in line


def test_compare_params_of_a_dropped_strategy_warn_and_are_ignored(tmp_path):
    path = write_config(tmp_path, data={"num_classes": 8},
                        compare={"strategies": ["random", "entropy"], "params": {"entropy": {"aggregate": "max"}}})
    # the warning comes from loading the config; the run then stops on a bad budget field
    code, err = rayal(tmp_path, "run", path, "--set", "compare.strategies=[random]",
                      "--set", "selection.budget=-1")
    assert code == 2
    warning = [line for line in err.splitlines() if ": warning: " in line]
    assert warning == ["rayal run: warning: compare.params has entries for ['entropy'], which are "
                       "not among the strategies ['random']: ignored"], err
    assert "selection.budget" in one_error(err, "run")


def test_class_names_dropped_by_a_num_classes_override_warn_in_one_line(tmp_path):
    path = write_config(tmp_path, data={"num_classes": 3, "class_names": ["a", "b", "c"]})
    code, err = rayal(tmp_path, "run", path, "--set", "data.num_classes=2",
                      "--set", "selection.budget=-1")
    assert code == 2
    warning = [line for line in err.splitlines() if ": warning: " in line]
    assert warning == ["rayal run: warning: data.class_names (3 names in the config) dropped: "
                       "data.num_classes was set to 2"], err
    assert "config_from_dict" not in err   # no source line under the warning


def test_pool_select_refuses_a_unit_other_than_the_pools(tmp_path):
    path = write_config(tmp_path, data={"num_classes": 8})
    code, err = rayal(tmp_path, "pool", "select", path, "--round", "1", "--score-dir", "nowhere",
                      "--set", "pool.unit=image", "--set", "selection.params.unit=patch")
    line = one_error(err, "pool select")
    assert code == 2 and "selection.params.unit 'patch'" in line and "pool.unit 'image'" in line


def test_selection_params_unit_follows_pool_unit(tmp_path):
    """One rule for `rayal run` and `rayal pool select`: unit defaults to pool.unit."""
    from rayal.config import load_config
    from rayal.pipeline.loop.selection_params import selection_params

    config = load_config(tmp_path / write_config(tmp_path), ["pool.unit=patch"])
    assert selection_params(config) == {"aggregate": "mean", "unit": "patch"}
    assert selection_params(config, "random", {}) == {"unit": "patch"}
    assert selection_params(config, "random", {"unit": "patch"}) == {"unit": "patch"}


def test_duplicate_frame_ids_refused_by_score_as_by_pool_init(tmp_path):
    for i in range(3):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / f"f{i}.png")
    pq.write_table(pa.table({"frame_id": ["a", "b", "a"], "uri": ["f0.png", "f1.png", "f2.png"]}),
                   tmp_path / "m.parquet")
    path = write_config(tmp_path, data={"source": "manifest", "manifest": "m.parquet", "num_classes": 3})
    lines = []
    for command in (["score"], ["pool", "init"]):
        code, err = rayal(tmp_path, *command, path)
        lines.append(one_error(err, " ".join(command)).split(": error: ", 1)[1])
        assert code == 2
    assert lines[0] == lines[1] == "data.manifest m.parquet: frame id 'a' is listed 2 times (frame ids must be unique)"


def test_debug_adds_the_traceback(tmp_path):
    path = write_config(tmp_path, data={"num_classes": 8})
    for argv in (["--debug", "run", path, "--set", "selection.strategy=random"],
                 ["run", path, "--set", "selection.strategy=random", "--debug"]):
        code, err = rayal(tmp_path, *argv)
        assert code == 2 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("rayal run: error:")


def test_train_on_a_bad_mask_names_the_frame(session_ray_env, tmp_path):
    """The bad mask is found inside a Ray Train worker: its cause, not Ray's wrapper, is shown.
    (The command connects to the session's Ray: what is tested is the worker's refusal.)"""
    data = folder(tmp_path / "ds", bad_mask="f2")
    path = write_config(tmp_path, data=data, train={**TINY["train"], "num_workers": 1, "cpus_per_worker": 0.5})
    code, err = rayal(tmp_path, "train", path, "--full", "--no-progress", env=session_ray_env)
    line = one_error(err, "train")
    assert code == 2 and "f2" in line and "trainannot" in line


def test_tune_trial_that_cannot_fit_is_refused_naming_the_fields(tmp_path):
    path = write_config(tmp_path, data={"num_classes": 8},
                        tune={"search_space": {"selection.strategy": {"grid": ["random", "entropy"]}},
                              "cpus_per_trial": 1.0})
    code, err = rayal(tmp_path, "tune", path, "--no-progress", "--set", "ray.actors=2",
                      "--set", "ray.cpus_per_actor=1")
    line = one_error(err, "tune")
    assert code == 2 and "tune.cpus_per_trial" in line and "ray.actors 2" in line and "has 2 CPUs" in line


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C (the documented way to stop a long compare before resuming it) prints one line,
    no traceback, and exits 130."""
    from rayal.cli import main as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "compare", interrupted)
    assert cli.main(["compare", "whatever.yaml"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rayal compare: interrupted" in err and "Traceback" not in err


def test_a_training_that_keeps_the_last_epoch_says_so():
    from rayal.pipeline.loop.train_job import TrainSummary

    kept = TrainSummary("out", 4, 3, 2, 0.31, 0.3, 1.0, "out/best.pt", "last").table()
    assert "kept (last) val mIoU  0.3100" in kept and "best" not in kept.replace("best.pt", "")
    assert "best epoch" in TrainSummary("out", 4, 3, 1, 0.31, 0.3, 1.0, "best.pt").table()
