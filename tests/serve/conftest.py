"""Label Studio for tests/serve/test_label_studio_protocol.py::test_real_label_studio.

Installing ``label-studio`` into its own venv takes ~110 s of wall time and ~90 s of CPU on
one core (measured here). When that test is collected, the install starts in the background
as soon as collection ends (at nice 10), so it uses the cycles the tests before it leave free
instead of adding to the suite's wall time. ``RAYAL_TEST_LS_VENV`` names an existing venv to use instead.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

LS_INSTALL_TIMEOUT = 900
_TEST = "test_real_label_studio"
_install: dict = {}


def _run_install(venv: Path, result: dict) -> None:
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120,
                       capture_output=True)
        proc = subprocess.Popen(nice + [str(venv / "bin" / "pip"), "install", "-q", "label-studio"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        result["proc"] = proc
        if result.get("stopped"):     # the session ended while the venv was being made
            proc.kill()
        out, _ = proc.communicate(timeout=LS_INSTALL_TIMEOUT)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, stderr=out)
        result["venv"] = venv
    except subprocess.CalledProcessError as error:
        result["error"] = f"installing label-studio failed ({error.cmd}):\n{(error.stderr or '')[-3000:]}"
    except Exception as error:   # a timeout, no venv module: the test reports it
        result["error"] = f"installing label-studio failed: {error!r}"


def _start() -> None:
    root = Path(tempfile.mkdtemp(prefix="rayal-lsvenv-"))
    result: dict = {}
    thread = threading.Thread(target=_run_install, args=(root / "venv", result), daemon=True,
                              name="label-studio-install")
    thread.start()
    _install.update(root=root, thread=thread, result=result)


def pytest_collection_finish(session) -> None:
    if not os.environ.get("RAYAL_TEST_LS_VENV") and not _install \
            and not session.config.option.collectonly and any(item.name == _TEST for item in session.items):
        _start()


def pytest_sessionfinish(session, exitstatus) -> None:
    """An install still running (the test failed or was never reached) is stopped, not waited for."""
    if _install:
        _install["result"]["stopped"] = True
        proc = _install["result"].get("proc")
        if proc is not None and proc.poll() is None:
            proc.kill()
        _install["thread"].join(60)
        shutil.rmtree(_install["root"], ignore_errors=True)


@pytest.fixture(scope="session")
def label_studio_venv() -> Path:
    """The venv with ``label-studio``: ``RAYAL_TEST_LS_VENV``, else the background install's
    (waited for), else one installed now (when the test was not collected at session start)."""
    given = os.environ.get("RAYAL_TEST_LS_VENV")
    if given:
        return Path(given)
    if not _install:
        _start()
    _install["thread"].join(LS_INSTALL_TIMEOUT)
    result = _install["result"]
    if "error" in result:
        raise RuntimeError(result["error"])
    if "venv" not in result:
        raise TimeoutError(f"installing label-studio took over {LS_INSTALL_TIMEOUT} s")
    return result["venv"]
