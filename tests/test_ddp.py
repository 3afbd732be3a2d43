"""DDP on the CPU: two gloo processes train, validate and test through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_ddp_two_processes_fit_and_report_once(in_tmp):
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "litvision"), "fit",
            f"--config={ROOT / 'configs/digits_lstm.yaml'}",
            "--trainer.max_epochs=2", "--trainer.accelerator=cpu", "--trainer.devices=2",
            "--trainer.strategy=ddp", "--trainer.enable_progress_bar=false",
        ],
        cwd=in_tmp, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((in_tmp / "lightning_logs" / "digits_lstm").iterdir())
    assert len(runs) == 1, "both ranks must log to one run"
    results = json.loads((runs[0] / "test_results.json").read_text())
    assert results["num_samples"] == 360, "every test image counted once across the two ranks"
    assert result.stdout.count("Test accuracy per class") == 1
