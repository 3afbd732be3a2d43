"""Callbacks the CLI adds to every run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from rich.console import Console
from rich.table import Table


class TestReport(Callback):
    """After a test run, prints per-class test accuracy as a table and saves it, with the confusion
    matrix and the checkpoint tested, as ``test_results.json`` in the run directory."""

    __test__ = False  # a callback, not a pytest test class

    def __init__(self, filename: str = "test_results.json", many_shot: int = 100, few_shot: int = 20) -> None:
        self.filename = filename
        self.many_shot = many_shot
        self.few_shot = few_shot
        self.ckpt_path: str | None = None

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.ckpt_path = trainer.ckpt_path

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Every rank must ask for log_dir (under DDP it is a collective call); without a logger there is
        # no run directory, and nothing is written.
        log_dir = trainer.log_dir if trainer.loggers else None
        confmat = getattr(pl_module, "confusion", {}).get("test")
        if confmat is None or not trainer.is_global_zero:
            return
        results = self.results(confmat.tolist(), pl_module.class_names)
        datamodule = trainer.datamodule
        counts = getattr(datamodule, "kept_class_counts", None)
        if counts is not None and getattr(datamodule, "imbalance", None) is not None:
            results.update(self.shot_groups(results, counts))
        results["checkpoint"] = self.ckpt_path
        results["epoch"] = pl_module.current_epoch
        results["global_step"] = pl_module.global_step
        Console().print(self.table(results))
        if log_dir is not None:
            path = Path(log_dir) / self.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=2) + "\n")
            Console().print(f"Test results saved to [bold]{path}[/bold]")

    @staticmethod
    def results(confmat: list[list[int]], class_names: list[str]) -> dict[str, Any]:
        """Overall, macro and per-class accuracy from a confusion matrix (rows: true class)."""
        support = [sum(row) for row in confmat]
        correct = [confmat[i][i] for i in range(len(confmat))]
        per_class = {
            name: {"acc": c / n if n else 0.0, "correct": c, "support": n}
            for name, c, n in zip(class_names, correct, support)
        }
        total = sum(support)
        return {
            "acc": sum(correct) / total if total else 0.0,
            "acc_macro": sum(v["acc"] for v in per_class.values()) / len(per_class),
            "num_samples": total,
            "per_class": per_class,
            "confusion_matrix": confmat,
        }

    def shot_groups(self, results: dict[str, Any], train_counts: list[int]) -> dict[str, Any]:
        """Mean per-class accuracy of the many-shot (> ``many_shot`` training images), medium and
        few-shot (< ``few_shot``) classes (Liu et al. 2019), for runs on imbalanced training sets. The
        counts are the real images kept, noisy copies left out."""
        groups: dict[str, list[float]] = {"many_shot": [], "medium_shot": [], "few_shot": []}
        for v, n in zip(results["per_class"].values(), train_counts):
            v["train_images"] = n
            group = "many_shot" if n > self.many_shot else "few_shot" if n < self.few_shot else "medium_shot"
            groups[group].append(v["acc"])
        return {
            "shot_groups": {g: {"acc": sum(a) / len(a), "classes": len(a)} for g, a in groups.items() if a}
        }

    @staticmethod
    def table(results: dict[str, Any]) -> Table:
        table = Table(title=f"Test accuracy per class ({results['num_samples']} images)")
        table.add_column("class")
        table.add_column("accuracy", justify="right")
        table.add_column("correct / images", justify="right")
        for name, v in results["per_class"].items():
            table.add_row(name, f"{100 * v['acc']:.2f}%", f"{v['correct']} / {v['support']}")
        table.add_section()
        table.add_row("[bold]overall[/bold]", f"[bold]{100 * results['acc']:.2f}%[/bold]", "")
        table.add_row("macro (mean of classes)", f"{100 * results['acc_macro']:.2f}%", "")
        for group, v in results.get("shot_groups", {}).items():
            table.add_row(f"{group.replace('_', '-')} classes ({v['classes']})", f"{100 * v['acc']:.2f}%", "")
        return table
