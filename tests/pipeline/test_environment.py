"""The numerical environment a run records, and the note when a comparison's runs mix them."""
from __future__ import annotations

import copy

import torch

from rayal.pipeline.environment import (differing_fields, environment_key, environment_record,
                                        mixed_environments, mixed_note, numerics_probe)


def test_record_is_plain_json_and_its_key_is_stable():
    record = environment_record()
    assert record["packages"]["torch"] == torch.__version__.split("+")[0]
    assert record["torch_threads"] == torch.get_num_threads()
    assert len(record["numerics_probe"]) == 16
    assert environment_key(record) == environment_key(copy.deepcopy(record))
    assert environment_key(None) is None


def test_probe_changes_with_the_kernels_that_ran():
    """The thread count changes how oneDNN splits a convolution's reduction, hence its
    rounding: the probe must see it (the drift measured between two 2-core machines)."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = numerics_probe()
        assert numerics_probe() == two          # deterministic within one setting
        torch.set_num_threads(1)
        assert numerics_probe() != two
    finally:
        torch.set_num_threads(threads)


def test_mixed_environments_are_named_with_the_fields_that_differ():
    a = {"packages": {"torch": "2.14.1"}, "cpu": {"isa": ["avx2", "avx512f"]}, "numerics_probe": "aa"}
    b = copy.deepcopy(a)
    b["cpu"]["isa"], b["numerics_probe"] = ["avx2"], "bb"
    assert differing_fields(a, b) == ["cpu.isa", "numerics_probe"]
    one = mixed_environments({"random/seed0": a, "entropy/seed0": copy.deepcopy(a), "old": None})
    assert list(one) == [environment_key(a), "unrecorded"]
    assert mixed_note(one, {environment_key(a): a}) is None
    two = mixed_environments({"random/seed0": a, "entropy/seed0": b})
    note = mixed_note(two, {environment_key(a): a, environment_key(b): b})
    assert note.startswith("the runs were made in 2 numerical environments")
    assert "entropy/seed0" in note and "differs in cpu.isa, numerics_probe" in note
