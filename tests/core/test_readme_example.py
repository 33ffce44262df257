"""The README's "Extending rayal" example, run as written: a newcomer's measure, unit and
strategy register, validate in a config and select (a fresh interpreter: its names are its own)."""
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"

CHECK = """
import numpy as np, pyarrow as pa, torch
import my_ext
from rayal.config import RayalConfig
from rayal.data import unit_region_map
from rayal.selection import Budget, PoolView, ScoreTables, get_strategy, list_strategies
config = RayalConfig.model_validate({"pool": {"unit": "stripe"}, "selection": {"plugins": ["my_ext"]},
    "scoring": {"measures": ["entropy", "top1_gap"], "units": ["stripe"], "mc_samples": 0}})
assert {"top1_gap", "least_gap"} <= set(list_strategies())
regions = unit_region_map(np.zeros((9, 4, 3), np.uint8), "stripe", config.scoring)
assert regions.shape == (9, 4) and sorted(np.unique(regions)) == [0, 1, 2], regions
frames = pa.table({"frame_id": ["a", "b", "c"], "top1_gap_max": [0.5, 0.1, 0.9]})
query = get_strategy("least_gap").select(ScoreTables(frames=frames), PoolView.fresh(["a", "b", "c"]),
                                         Budget(units=2), seed=0)
assert list(query.frame_id) == ["b", "a"], list(query.frame_id)
print("README example ok")
"""


def test_the_readme_extension_example_runs_as_written(tmp_path):
    text = README.read_text()
    block = re.search(r"```python\n(# my_ext\.py\n.*?)```", text, re.S)
    assert block, "README.md lost its '# my_ext.py' example"
    (tmp_path / "my_ext.py").write_text(block.group(1))
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "README example ok" in done.stdout
