"""rayal serve's start-up outlasts Ray Serve's fixed 60 s proxy wait on a loaded node: after
that error it polls readiness until serve.start_timeout_s, never re-running the step (a second
serve.run would roll out new replicas), and other errors pass at once."""
from __future__ import annotations

import time

import pytest

from rayal.serve.service import waiting_for_proxy

PROXY_LATE = "HTTP proxies not available after 60s."


def _late_step(calls):
    def step():
        calls.append("step")
        raise TimeoutError(PROXY_LATE)
    return step


def test_a_late_proxy_is_waited_for_without_repeating_the_step():
    calls, polls = [], iter([False, False, True])

    def ready():
        calls.append("poll")
        return next(polls)

    waiting_for_proxy(_late_step(calls), ready, time.monotonic() + 60, 60, poll_s=0.01)
    assert calls == ["step", "poll", "poll", "poll"]


def test_a_step_that_succeeds_is_not_polled():
    calls = []
    waiting_for_proxy(lambda: calls.append("step"), lambda: calls.append("poll"),
                      time.monotonic() + 60, 60)
    assert calls == ["step"]


def test_past_the_deadline_the_error_names_the_setting():
    calls = []
    with pytest.raises(TimeoutError, match="serve.start_timeout_s=0.05 s"):
        waiting_for_proxy(_late_step(calls), lambda: False, time.monotonic() + 0.05, 0.05,
                          poll_s=0.01)
    assert calls.count("step") == 1


def test_other_errors_are_not_waited_on():
    calls = []

    def step():
        calls.append("step")
        raise TimeoutError("deployment rayal_ingress failed")

    with pytest.raises(TimeoutError, match="deployment rayal_ingress failed"):
        waiting_for_proxy(step, lambda: calls.append("poll"), time.monotonic() + 60, 60)
    assert calls == ["step"]
