"""Small jobs that training, analysis and reproduction all need, each done here once: files written
atomically, the time of day, the GPUs visible, the git state of the source, a run's checkpoint found and
read safely, a ``class_path`` imported, a run's TensorBoard scalars read, runs named in tables and figures,
CSV and Markdown tables."""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import pickle
import re
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import torch
import yaml

from litvision.errors import LitvisionError


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file with ``write`` into a temporary file beside ``path``, then rename it into place: a
    reader (another process, a run resumed after a crash) sees the old file or the new one, never half
    of one, and two writers never share a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)  # mkstemp makes it private; give it the permissions of a new file
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (see :func:`write_atomically`)."""
    write_atomically(path, lambda f: f.write(text.encode()))


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically (see :func:`write_text`)."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object read from ``path``; None if it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def git_state(folder: Path | None = None) -> dict[str, Any]:
    """The commit of the git tree holding ``folder`` (default: the litvision source) and whether it had
    uncommitted changes to tracked files; both None outside git."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def now() -> str:
    """The time in UTC, to the second, as every file of a run records it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def find_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """The run's ``best`` checkpoint (highest val/acc, as named by the CLI), its ``last``, or a path."""
    if which not in ("best", "last"):
        path = Path(which)
        if not path.is_file():
            raise LitvisionError(f"checkpoint '{which}' not found: give 'best', 'last' or a .ckpt file")
        return path
    folder = run_dir / "checkpoints"
    last = folder / "last.ckpt"
    best = sorted(folder.glob("best-*.ckpt"), key=_val_acc_of)
    if which == "best" and best:
        return best[-1]
    if last.is_file():
        return last
    raise LitvisionError(f"no checkpoint in '{folder}': is '{run_dir}' a litvision run directory?")


def _val_acc_of(path: Path) -> float:
    try:
        return float(path.stem.rsplit("val_acc", 1)[1])
    except (IndexError, ValueError):
        return float("-inf")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, read without unpickling code; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise LitvisionError(f"checkpoint '{path}' not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f"a pickled {found.group(1)} object" if found else "pickled objects"
        raise LitvisionError(
            f"checkpoint '{path}' holds {what}, not only tensors and plain data: refused, since loading it "
            "could run code; load only checkpoints you trust, re-saved with their tensors alone"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        reason = str(err).split(". ")[0].splitlines()[0] if str(err) else type(err).__name__
        raise LitvisionError(f"checkpoint '{path}' is truncated or not a checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise LitvisionError(f"checkpoint '{path}' is not a Lightning checkpoint: it has no state_dict")
    return checkpoint


def lookup(config: dict[str, Any], key: str) -> tuple[bool, Any]:
    """(found, value) of a dotted key in a config mapping; ``data.x`` also finds ``data.init_args.x``."""
    node: Any = config
    for part in key.split("."):
        if isinstance(node, dict) and part not in node and "init_args" in node:
            node = node["init_args"]
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def read_yaml(path: Path | str, what: str) -> dict[str, Any]:
    """The mapping a YAML file holds; a one-line error naming ``what`` the file is meant to be."""
    path = Path(path)
    if not path.is_file():
        raise LitvisionError(f"{what} '{path}' not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise LitvisionError(f"{what} '{path}' is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise LitvisionError(f"{what} '{path}' must be a mapping of keys to values")
    return data


def import_object(class_path: str, what: str = "class_path") -> Any:
    """The object a dotted ``class_path`` names (``torch.optim.SGD``); a one-line error if it cannot
    be imported, naming ``what`` it was meant to be."""
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise LitvisionError(f"{what} '{class_path}' cannot be imported: give module.ClassName") from None


def read_scalars(run_dir: Path, tags: Sequence[str] | None = None) -> dict[str, list[Any]]:
    """The scalar events (``.step``, ``.value``, ``.wall_time``) of a run's TensorBoard files by tag, in
    step order; only ``tags`` if given. Images and histograms are not loaded (a run logs a confusion
    matrix figure every epoch)."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    if not any(Path(run_dir).glob("events.out.tfevents.*")):
        return {}
    skip = (ea.IMAGES, ea.HISTOGRAMS, ea.TENSORS, ea.AUDIO, ea.COMPRESSED_HISTOGRAMS)
    events = ea.EventAccumulator(str(run_dir), size_guidance={ea.SCALARS: 0, **dict.fromkeys(skip, 1)})
    events.Reload()
    found = events.Tags()["scalars"]
    return {tag: events.Scalars(tag) for tag in found if tags is None or tag in tags}


def run_label(run_dir: Path) -> str:
    """How tables and figures name a run: ``<config>/version_N`` for a run directory of ``litvision
    fit``, the directory's name otherwise (a ``test_results.json`` stands for its directory)."""
    run_dir = Path(run_dir).resolve()
    if run_dir.suffix == ".json":
        run_dir = run_dir.parent
    return f"{run_dir.parent.name}/{run_dir.name}" if run_dir.name.startswith("version_") else run_dir.name


def run_names(runs: Sequence[Path]) -> list[str]:
    """Short names of several runs: each one's config name, with its version where configs repeat."""
    labels = [run_label(r) for r in runs]
    short = [label.split("/")[0] for label in labels]
    return short if len(set(short)) == len(short) else labels


def csv_text(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as CSV text (``\n`` line ends)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def markdown_table(rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; the first row is the header."""
    lines = ["| " + " | ".join(map(str, rows[0])) + " |", "|" + " --- |" * len(rows[0])]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows[1:]]
    return "\n".join(lines) + "\n"
