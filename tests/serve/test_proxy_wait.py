"""rayal serve's start-up outlasts Ray Serve's fixed 60 s proxy wait on a loaded node: the wait
is repeated until serve.start_timeout_s, and only for that error."""
from __future__ import annotations

import time

import pytest

from rayal.serve.service import waiting_for_proxy

PROXY_LATE = "HTTP proxies not available after 60s."


def test_a_late_proxy_is_waited_for_until_it_is_ready():
    calls = []

    def step():
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError(PROXY_LATE)
        return "client"

    assert waiting_for_proxy(step, time.monotonic() + 60, 60) == "client"
    assert len(calls) == 3


def test_past_the_deadline_the_error_names_the_setting():
    def step():
        raise TimeoutError(PROXY_LATE)

    with pytest.raises(TimeoutError, match="serve.start_timeout_s=5 s"):
        waiting_for_proxy(step, time.monotonic() - 1, 5)


def test_other_errors_are_not_retried():
    calls = []

    def step():
        calls.append(1)
        raise TimeoutError("deployment rayal_ingress failed")

    with pytest.raises(TimeoutError, match="deployment rayal_ingress failed"):
        waiting_for_proxy(step, time.monotonic() + 60, 60)
    assert len(calls) == 1
