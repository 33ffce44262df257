"""Keep one known false alarm of Ray core off the console while a Ray Data scoring job runs.

Ray 2.60's core worker logs, at ERROR level and to the driver's stderr, a ``core_worker.cc``
line for every actor created with an object-store argument and ``max_restarts != 0``::

    [... E ...] core_worker.cc:2465: Actor with class name: 'MapWorker(MapBatches(
    FrameBatchScorer))' and ID: '...' has constructor arguments in the object store and
    max_restarts > 0. If the arguments in the object store go out of scope or are lost, the
    actor restart will fail. See https://github.com/ray-project/ray/issues/53727 ...

Ray Data itself creates every pool actor that way (``_MapWorker`` receives its DataContext and
map transformer as ``ray.put`` references and an actor handle, whatever the UDF's constructor
arguments are), and restarts are what let a scoring job survive a lost node, so the line comes
with every ``rayal score``: ray-project/ray#57733 reports it as a false alarm of minimal Ray Data
use. It is one for rayal: those references live in the driver's operator for the whole job, so
a restarted actor finds them (tests/pipeline/test_score_multinode.py removes a node mid-job). A
new user reads it as a failure. :func:`ray_data_false_alarm_filtered` forwards this process's
stderr through a pipe and drops only lines of that exact form (a ``MapWorker`` actor); every
other line, progress bars included, passes unchanged and at once.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading

FALSE_ALARM = re.compile(rb"core_worker\.cc:\d+: Actor with class name: 'MapWorker\(.*' and ID: "
                         rb"'[0-9a-f]+' has constructor arguments in the object store and "
                         rb"max_restarts > 0\.")
_SEGMENT = re.compile(rb"[^\r\n]*[\r\n]")
_LONGEST_HELD = 8192   # a partial line starting with "[" is held until its newline, up to this


def is_false_alarm(line: bytes) -> bool:
    return FALSE_ALARM.search(line) is not None


def _pump(read_fd: int, out_fd: int) -> None:
    """Copy ``read_fd`` to ``out_fd`` until EOF, without the false-alarm lines. A partial line is
    forwarded at once unless it may be a core-worker log line (starts with ``[``)."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            break
        data = pending + chunk
        lines = _SEGMENT.findall(data)   # each ends in "\n" or "\r" (a progress bar's redraw)
        pending = data[sum(map(len, lines)):]
        out = [line for line in lines if not is_false_alarm(line)]
        if pending and (not pending.startswith(b"[") or len(pending) > _LONGEST_HELD):
            out.append(pending)
            pending = b""
        if out:
            _write_all(out_fd, b"".join(out))
    if pending and not is_false_alarm(pending):
        _write_all(out_fd, pending)
    os.close(read_fd)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data):]
        except OSError:
            return


@contextlib.contextmanager
def ray_data_false_alarm_filtered():
    """While inside, this process's fd 2 goes through a filter that drops the Ray core false
    alarm described in the module docstring. Enter it after ``ray.init`` (processes started
    inside would inherit the pipe). No-op where fd 2 cannot be swapped (not POSIX)."""
    if os.name != "posix":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    thread = threading.Thread(target=_pump, args=(read_fd, saved), daemon=True,
                              name="rayal-stderr-filter")
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)          # the pipe's last write end closes: the pump sees EOF
        thread.join(timeout=10)
        os.close(saved)
