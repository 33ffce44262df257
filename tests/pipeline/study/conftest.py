"""Fixtures of the study tests: a tiny comparison config written to a folder."""
import pytest
import yaml

COMPARE = {   # on the "sweep" preset of tests/pipeline/conftest.py
    "name": "tiny-compare", "data": {"synthetic": {"num_frames": 16, "eval_frames": 8}},
    "compare": {"strategies": ["random", "entropy"], "seeds": [0],
                "params": {"entropy": {"aggregate": "max"}}},
}


@pytest.fixture(scope="session")
def write(tiny_config):
    def _write(tmp_path):
        cfg = tiny_config("sweep", **COMPARE, output_dir=str(tmp_path / "cmp"))
        path = tmp_path / "cmp.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path
    return _write
