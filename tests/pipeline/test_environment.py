"""The numerical environment a run records, and the note when a comparison's runs mix them."""
from __future__ import annotations

import copy

import torch

from rayal.pipeline.environment import (differing_fields, environment_key, environment_record,
                                        mixed_environments, mixed_note, numerics_probe,
                                        pairs_match)


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


def test_the_record_takes_the_training_thread_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = numerics_probe()
    finally:
        torch.set_num_threads(threads)
    record = environment_record(torch_threads=1)
    assert record["torch_threads"] == 1 and record["numerics_probe"] == one
    assert torch.get_num_threads() == threads       # restored


def _record(**changes) -> dict:
    record = {"packages": {"torch": "2.14.1"}, "python": "3.11.7", "ray": "2.60.0",
              "cpu": {"model": "x", "isa": ["avx2", "avx512f"], "logical_cpus": 2},
              "torch_threads": 2, "cuda": None, "numerics_probe": "aa"}
    for field, value in changes.items():
        if field == "isa":
            record["cpu"]["isa"] = value
        else:
            record[field] = value
    return record


def test_the_key_ignores_what_does_not_decide_the_numbers():
    a = _record()
    assert environment_key(a) == environment_key(_record(python="3.12.0", ray="2.61.0"))
    b = _record(isa=["avx2"], numerics_probe="bb", torch_threads=1)
    assert environment_key(a) != environment_key(b)
    assert differing_fields(a, b) == ["cpu.isa -avx512f", "torch_threads 2 -> 1",
                                      "numerics_probe aa -> bb"]


def test_mixed_environments_are_named_with_the_fields_that_differ():
    a, b = _record(), _record(isa=["avx2"], numerics_probe="bb")
    one = mixed_environments({"random/seed0": a, "entropy/seed0": copy.deepcopy(a)})
    assert list(one) == [environment_key(a)]
    assert mixed_note(one, {environment_key(a): a}) is None
    assert mixed_note({"unrecorded": ["old"]}, {}) is None     # an old comparison: nothing to say
    two = mixed_environments({"random/seed0": a, "entropy/seed0": b})
    note = mixed_note(two, {environment_key(a): a, environment_key(b): b})
    assert note.startswith("the runs were made in 2 numerical environments")
    assert "entropy/seed0; differs in cpu.isa -avx512f, numerics_probe aa -> bb" in note
    partly = mixed_environments({"random/seed0": a, "entropy/seed0": None})
    note = mixed_note(partly, {environment_key(a): a})
    assert "1 run recorded none" in note and "entropy/seed0" in note


def test_pairs_match_per_seed():
    assert pairs_match({0: {"e"}, 1: {"e"}}, {0: {"e"}, 1: {"e"}}, [0, 1]) == (True, [], [])
    assert pairs_match({0: {"e"}, 1: {"e"}}, {0: {"e"}, 1: {"f"}}, [0, 1]) == (False, [1], [])
    assert pairs_match({0: {"e"}}, {0: {None}}, [0]) == (None, [], [0])
