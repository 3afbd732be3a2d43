from __future__ import annotations

import multiprocessing
import subprocess
import tempfile
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The configs of the top level and of the method families kept in their own folders (long-tailed
# learning); configs/sweeps, experiments and analysis hold other formats.
CONFIGS = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "configs" / "longtail").glob("*.yaml"))


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory, so that lightning_logs/ and data/ land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _quiet_lightning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(LeafSpec|num_workers|logging interval|across ranks).*")
        yield


def _cli_child(args: list[str], cwd: str, out: str, err: str) -> None:
    """What ``python -m litvision ARGS`` does, in a process forked from one that imported litvision
    already: the same entry point, its output in the files ``out`` and ``err``, the interpreter's exit
    status (0, SystemExit's code, or 1 after a traceback)."""
    import multiprocessing
    import os
    import sys
    import traceback

    # A forkserver's child inherits that start method; the command's own processes (loader workers)
    # start as they do under ``python -m litvision``, by the platform's default.
    multiprocessing.set_start_method(None, force=True)
    os.chdir(cwd)
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = ["litvision", *args]
    status = 0
    try:
        from litvision.commands import main

        main()
    except SystemExit as stop:
        code = stop.code
        if code is None or isinstance(code, int):
            status = code or 0
        else:
            print(code, file=sys.stderr)
            status = 1
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


_FORKSERVER = None


def run_litvision(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m litvision ARGS`` in ``cwd``, as a ``CompletedProcess`` with text output, without the
    seconds of Python and Lightning start-up each time: the command runs in a process forked from a
    server that imported litvision's CLI once (multiprocessing's forkserver, single-threaded)."""
    global _FORKSERVER
    if _FORKSERVER is None:
        _FORKSERVER = multiprocessing.get_context("forkserver")
        _FORKSERVER.set_forkserver_preload(["conftest", "litvision.cli"])
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder, "out"), Path(folder, "err")
        child = _FORKSERVER.Process(target=_cli_child, args=(list(args), str(cwd), str(out), str(err)))
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise subprocess.TimeoutExpired(["litvision", *args], timeout)
        text = [path.read_text(errors="replace") for path in (out, err)]
        return subprocess.CompletedProcess(["litvision", *args], child.exitcode, *text)
