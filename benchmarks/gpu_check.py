"""The Python half of ``benchmarks/gpu_check.sh``: the environment report and the summary.

    python benchmarks/gpu_check.py env --json ENV.json       # GPU, driver, versions, precision chosen
    python benchmarks/gpu_check.py summary WORK_DIR OUT_DIR   # summary.md and summary.json from a check

The summary reads what the steps left in WORK_DIR (``steps.tsv``, ``env.json``, ``throughput.json``,
``one_epoch.json``, the runs' ``test_results.json``, the gpu-scale rows' run directories) and judges the
speed targets of issues #6 and #28. It uses the standard library alone, so that it still reports when torch
or litvision would not import.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "configs" / "resnet18_cifar.yaml"
# Issue #6's targets for one H100 (bf16, the CIFAR-10 JPEG copy).
MIN_IMAGES_PER_S = 25_000
MAX_EPOCH_S = 2.0
MIN_IN_MEMORY_OVER_LOADER = 3.0
MIN_LIGHTNING_OVER_PLAIN = 0.95
MIN_FAST_ACC = 0.93
MAX_FAST_S = 180.0
EPOCH_IMAGES = 45_000  # a CIFAR-10 epoch of these configs: 50,000 training images less 5,000 held out
PATHS = {"a": "(a) Lightning, DataLoader", "b": "(b) Lightning, in memory", "c": "(c) plain loop, in memory",
         "g": "(g) Lightning, CUDA graphs", "h": "(h) plain loop, CUDA graphs"}  # fmt: skip


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _nvidia_smi() -> list[dict[str, str]]:
    if shutil.which("nvidia-smi") is None:
        return []
    fields = "name,driver_version,memory.total,clocks.max.sm,power.limit"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    names = fields.split(",")
    return [dict(zip(names, (v.strip() for v in line.split(",")))) for line in out.splitlines() if line]


def environment() -> dict[str, Any]:
    """What the check ran on, and the precision litvision's CLI picks there for the flagship config."""
    import torch

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "gpu_count": torch.cuda.device_count(),
        "nvidia_smi": _nvidia_smi(),
        "packages": {
            name: _version(name)
            for name in (
                "lightning",
                "torchvision",
                "torchmetrics",
                "jsonargparse",
                "scikit-learn",
                "litvision",
            )
        },
        "lightning_command": shutil.which("lightning"),
        # DataLoader workers hand batches over through shared memory; a small /dev/shm breaks them.
        "dev_shm_gib": round(shutil.disk_usage("/dev/shm").total / 2**30, 1)
        if Path("/dev/shm").is_dir()
        else None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            gpu=torch.cuda.get_device_name(0),
            capability=".".join(map(str, torch.cuda.get_device_capability(0))),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    try:
        import litvision
        from litvision.cli import LitvisionCLI

        env["litvision_file"] = litvision.__file__
        cli = LitvisionCLI(args=[f"--config={FLAGSHIP}", "--trainer.logger=false"], run=False)
        env["precision_chosen"] = str(cli.trainer.precision)
        env["accelerator_chosen"] = type(cli.trainer.accelerator).__name__
    except Exception as err:  # the report still says what it could
        env["litvision_error"] = f"{type(err).__name__}: {err}"
    return env


def read_steps(work: Path) -> list[dict[str, Any]]:
    """The step records ``gpu_check.sh`` appends to ``steps.tsv``: name, status, seconds, exit code, limit."""
    path = work / "steps.tsv"
    rows: dict[str, dict[str, Any]] = {}  # a step rerun with --only keeps its place and its last record
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, status, seconds, rc, limit = (line.split("\t") + [""] * 5)[:5]
        rows[name] = {
            "step": name,
            "status": status,
            "seconds": float(seconds or 0),
            "rc": rc,
            "limit_s": limit,
        }
    return list(rows.values())


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def newest_run(runs: Path, name: str) -> Path | None:
    """The newest run directory of a config under ``runs`` (``runs/<name>/version_N``)."""
    found = sorted((runs / name).glob("version_*"), key=lambda p: int(p.name.split("_")[-1]))
    return found[-1] if found else None


def _target(name: str, value: float | None, goal: str, met: bool | None) -> dict[str, Any]:
    verdict = "not measured" if value is None or met is None else ("met" if met else "MISSED")
    return {"target": name, "value": value, "goal": goal, "verdict": verdict}


def figures(work: Path, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The key figures of each step and the targets, from the files the steps wrote."""
    seconds = {s["step"]: s["seconds"] for s in steps if s["status"] == "ok"}
    out: dict[str, Any] = {}
    throughput = _json(work / "throughput.json")
    rate: dict[str, float] = {}
    medians: dict[str, float] = {}
    if throughput:  # benchmarks/throughput.py's rounds: the paths it ran and their ratios; medians
        rounds, medians = throughput["rounds"], throughput["medians"]
        rate = {k: statistics.median(r[k]["images_per_s"] for r in rounds) for k in PATHS if k in rounds[0]}
        out["throughput"] = {
            "config": Path(throughput["setup"]["config"]).name,
            "device": throughput["setup"].get("device_name"),
            "precision": next(rounds[0][k]["precision"] for k in rate),
            "rounds": len(rounds),
            "images_per_s": {k: round(v) for k, v in rate.items()},
            "epoch_s": {k: [r[k]["epoch_s"] for r in rounds] for k in rate},  # per round
            "ratios": {k: round(v, 3) for k, v in medians.items()},
            "cudagraph_skips": throughput.get("cudagraph_skips"),  # graphs run eagerly: 0 expected
        }
        # --profile: per training step of one more epoch of each path under torch's profiler
        profiled = {k: rounds[-1][k]["profile"] for k in rate if "profile" in rounds[-1][k]}
        if profiled:
            out["throughput"]["profile_per_step"] = profiled
    out["rows"] = rows(work / "reproduce")
    runs = {}
    named = (
        ("fast", "resnet18_cifar_fast"),
        ("flagship", "resnet18_cifar"),
        ("compile", "compile"),
        ("ddp", "ddp"),
    )
    for step, config in named:
        run = newest_run(work / "runs", config)
        results = _json(run / "test_results.json") if run else None
        if results:
            runs[step] = {
                "run": str(run.relative_to(work)),
                "test_acc": round(results["acc"], 4),
                "test_images": results["num_samples"],
                "step_s": seconds.get(step),
            }
    out["runs"] = runs
    for step, run in runs.items():  # the analysis tools ran on the fast run, else on the flagship's
        analysis = work / run["run"] / "analysis"
        if analysis.is_dir():
            svm = _json(analysis / "svm_head.json") or {}
            heads = {name: round(head["acc"], 4) for name, head in svm.get("heads", {}).items()}
            out["analysis"] = {
                "run": step,
                "files": sorted(p.name for p in analysis.iterdir()),
                "confusion_acc": (_json(analysis / "confusion.json") or {}).get("acc"),
                "head_test_acc": heads,
            }
            break
    one_epoch = _json(work / "one_epoch.json")
    if one_epoch is not None:
        failed = [r["config"] for r in one_epoch if "error" in r]
        out["configs"] = {
            "trained": len(one_epoch) - len(failed),
            "of": len(list((ROOT / "configs").glob("*.yaml"))),
            "failed": failed,
            "rows": one_epoch,
        }
    fast_acc = runs.get("fast", {}).get("test_acc")
    # A fast run cut at its limit missed the time target; one that failed measured nothing.
    fast_step = next((s for s in steps if s["step"] == "fast"), {})
    fast_s = fast_step["seconds"] if fast_step.get("status") in ("ok", "timeout") else None
    b_rate, b_over_a, b_over_c, g_over_h = (
        rate.get("b"),
        medians.get("b/a"),
        medians.get("b/c"),
        medians.get("g/h"),
    )
    # An epoch's time from the rate: the throughput step may train only some batches of each epoch.
    b_epoch, g_epoch = (EPOCH_IMAGES / rate[k] if k in rate else None for k in "bg")
    out["targets"] = [
        _target(
            "in-memory Lightning images/s", b_rate, f">= {MIN_IMAGES_PER_S}", _ge(b_rate, MIN_IMAGES_PER_S)
        ),
        _target("in-memory epoch (s)", b_epoch, f"<= {MAX_EPOCH_S}", _le(b_epoch, MAX_EPOCH_S)),
        _target("epoch with CUDA graphs (g, s)", g_epoch, f"<= {MAX_EPOCH_S}", _le(g_epoch, MAX_EPOCH_S)),
        _target(
            "in memory / DataLoader (b/a)",
            b_over_a,
            f">= {MIN_IN_MEMORY_OVER_LOADER}",
            _ge(b_over_a, MIN_IN_MEMORY_OVER_LOADER),
        ),
        _target(
            "Lightning / plain loop (b/c)",
            b_over_c,
            f">= {MIN_LIGHTNING_OVER_PLAIN}",
            _ge(b_over_c, MIN_LIGHTNING_OVER_PLAIN),
        ),
        _target(
            "Lightning / plain loop, CUDA graphs (g/h)",
            g_over_h,
            f">= {MIN_LIGHTNING_OVER_PLAIN}",
            _ge(g_over_h, MIN_LIGHTNING_OVER_PLAIN),
        ),
        _target("fast recipe test accuracy", fast_acc, f">= {MIN_FAST_ACC}", _ge(fast_acc, MIN_FAST_ACC)),
        _target("fast recipe end to end (s)", fast_s, f"< {MAX_FAST_S:.0f}", _lt(fast_s, MAX_FAST_S)),
    ]
    return out


def rows(root: Path) -> list[dict[str, Any]]:
    """The gpu-scale runs that the ``rows`` step left under ``root`` (``gpu/<report>/<run>/``): test
    accuracy, wall time and the compile mode of the finished ones, the status of the others."""
    found = []
    for marker in sorted(root.glob("gpu/*/*/reproduce.json")):
        run, state = marker.parent, _json(marker) or {}
        results, info = _json(run / "test_results.json") or {}, _json(run / "run_info.json") or {}
        found.append({
            "run": f"{run.parent.name}/{run.name}", "status": state.get("status"),
            "test_acc": results.get("acc"), "wall_time_s": state.get("wall_time_s"),
            "epochs": info.get("epochs"), "compile": info.get("compile"), "device": info.get("device"),
        })  # fmt: skip
    return found


def _ge(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _le(value: float | None, goal: float) -> bool | None:
    return None if value is None else value <= goal


def _lt(value: float | None, goal: float) -> bool | None:
    return None if value is None else value < goal


def markdown(env: dict[str, Any], steps: list[dict[str, Any]], found: dict[str, Any], tiny: bool) -> str:
    gpu = env.get("gpu") or "no GPU (CPU rehearsal)"
    smi = env.get("nvidia_smi") or [{}]
    lines = [
        "# litvision GPU check",
        "",
        f"- device: {gpu}, {env.get('gpu_count', 0)} GPU(s), driver {smi[0].get('driver_version', '-')}, "
        f"{env.get('gpu_memory_gib', '-')} GiB, {env.get('cpu_count')} CPU cores",
        f"- torch {env.get('torch')} (CUDA {env.get('torch_cuda')}, cuDNN {env.get('cudnn')}), "
        f"lightning {env.get('packages', {}).get('lightning')}, python {env.get('python')}",
        f"- bf16 supported: {env.get('bf16_supported', '-')}; precision the CLI chose for "
        f"resnet18_cifar.yaml: {env.get('precision_chosen', env.get('litvision_error', '-'))}",
        "- sizes: " + ("TINY rehearsal (few batches of a subset): not the targets' runs" if tiny else "full"),
        "",
        "## Steps",
        "",
        "| step | status | seconds | limit s |",
        "| --- | --- | ---: | ---: |",
    ]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']:.1f} | {s['limit_s']} |" for s in steps]
    throughput = found.get("throughput")
    if throughput:
        lines += [
            "",
            f"## Throughput ({throughput['config']}, {throughput['device']}, {throughput['precision']})",
            "",
            "| path | images/s | epochs (s), per round |",
            "| --- | ---: | --- |",
        ]
        lines += [
            f"| {PATHS[k]} | {v} | {throughput['epoch_s'][k]} |"
            for k, v in throughput["images_per_s"].items()
        ]
        ratios = ", ".join(f"{k} {v}" for k, v in throughput["ratios"].items())
        lines += ["", f"{ratios} (medians of {throughput['rounds']} round(s))"]
        if throughput["cudagraph_skips"] is not None:
            lines += ["", f"CUDA graphs torch.compile skipped (run eagerly): {throughput['cudagraph_skips']}"]
        profiled = throughput.get("profile_per_step")
        if profiled:
            lines += [
                "",
                "Per training step, one more epoch of each under torch's profiler (it slows both):",
                "",
                "| path | wall ms | CPU in torch ops and CUDA calls ms | GPU kernels ms | launches |",
                "| --- | ---: | ---: | ---: | ---: |",
            ]
            lines += [
                f"| {PATHS[k]} | {p['wall_ms']} | {p['cpu_op_ms']} | {p['gpu_kernel_ms']} | {p['launches']} |"
                for k, p in profiled.items()
            ]
    if found["runs"]:
        lines += [
            "",
            "## Runs",
            "",
            "| step | test accuracy | test images | step s | run |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        for step, run in found["runs"].items():
            step_s = "-" if run["step_s"] is None else f"{run['step_s']:.1f}"
            lines.append(
                f"| {step} | {run['test_acc']:.4f} | {run['test_images']} | {step_s} | {run['run']} |"
            )
    if found.get("rows"):
        lines += ["", "## GPU-scale rows (gpu/ in runs.tar.gz: unpack into reports/gpu/runs)", ""]
        lines += [
            "| run | status | test accuracy | wall s | epochs | compile |",
            "| --- | --- | ---: | ---: | ---: | --- |",
        ]
        for r in found["rows"]:
            acc = "-" if r["test_acc"] is None else f"{r['test_acc']:.4f}"
            cells = (r["run"], r["status"], acc, r["wall_time_s"], r["epochs"], r["compile"])
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    analysis = found.get("analysis")
    if analysis:
        heads = ", ".join(f"{name} {acc:.4f}" for name, acc in analysis["head_test_acc"].items()) or "-"
        lines += [
            "",
            f"## Analysis tools on the {analysis['run']} run",
            "",
            f"- files written: {', '.join(analysis['files'])}",
            f"- confusion: test accuracy {analysis['confusion_acc']}",
            f"- svm-head: test accuracy by head: {heads}",
        ]
    configs = found.get("configs")
    if configs:
        title = f"{configs['trained']} of {configs['of']} trained, {len(configs['failed'])} failed"
        lines += ["", f"## Every config, one epoch on synthetic data: {title}", ""]
        lines += ["| config | data | seconds | test acc / error |", "| --- | --- | ---: | --- |"]
        for r in configs["rows"]:
            outcome = f"{r['test_acc']:.3f}" if "test_acc" in r else f"FAILED {r['error'][:200]}"
            lines.append(f"| {r['config']} | {r['data']} | {r['seconds']:.1f} | {outcome} |")
    lines += ["", "## Targets (issues #6 and #28)", ""]
    if tiny:
        lines.append(
            "Tiny rehearsal: the figures below come from a few batches of a subset, not the targets' runs."
        )
        lines.append("")
    lines += ["| target | value | goal | verdict |", "| --- | ---: | --- | --- |"]
    for t in found["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:.4g}"
        verdict = f"n/a (tiny): {t['verdict']}" if tiny else t["verdict"]
        lines.append(f"| {t['target']} | {value} | {t['goal']} | {verdict} |")
    return "\n".join(lines) + "\n"


def summary(work: Path, out: Path, tiny: bool) -> None:
    steps = read_steps(work)
    env = _json(work / "env.json") or {}
    found = figures(work, steps)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(env, steps, found, tiny)
    (out / "summary.md").write_text(text)
    record = {"tiny": tiny, "environment": env, "steps": steps, **found}
    (out / "summary.json").write_text(json.dumps(record, indent=2) + "\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="print the environment as JSON")
    env.add_argument("--json", type=Path, help="also write it here")
    summ = sub.add_parser("summary", help="write summary.md and summary.json into OUT_DIR")
    summ.add_argument("work", type=Path)
    summ.add_argument("out", type=Path)
    summ.add_argument("--tiny", action="store_true", help="the check ran at tiny sizes")
    args = parser.parse_args()
    if args.command == "env":
        report = environment()
        text = json.dumps(report, indent=2)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
    else:
        summary(args.work, args.out, args.tiny)


if __name__ == "__main__":
    main()
