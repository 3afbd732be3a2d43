"""What pruning buys a search, on the bundled digits (docs/search.md, "Measured"):

1. a 20-trial search (TPE) over the learning rate and weight decay of configs/search/digits.yaml with the
   median pruner;
2. the same 20 trials (the same values, enqueued) without pruning;
3. the 4x4 grid over the same ranges, without pruning.

It prints the time of (1) over (2) (target <= 0.6) and the best validation accuracy of (1) against (3)
(target >=). One process, one worker, after a one-trial warm-up that is not timed:

    python benchmarks/search.py                      # 20 trials of 10 epochs, a quiet 2-core CPU
    python benchmarks/search.py --trials 3 --epochs 2 --grid-points 2   # a rehearsal
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna
import yaml

from litvision.search.cli import main as search

ROOT = Path(__file__).resolve().parents[1]


def run(folder: Path, name: str, epochs: int, *args: str) -> tuple[float, optuna.Study]:
    started = time.perf_counter()
    search(
        [
            f"--config={ROOT / 'configs/digits_lstm.yaml'}",
            f"--space={ROOT / 'configs/search/digits.yaml'}",
            f"--trainer.max_epochs={epochs}",
            f"--output={folder / name}",
            f"--study={name}",
            "--test_trials=none",
            *args,
        ]
    )
    seconds = time.perf_counter() - started
    return seconds, optuna.load_study(study_name=name, storage=f"sqlite:///{folder / name / 'study.db'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--grid-points", type=int, default=4)
    parser.add_argument("--sampler-seed", type=int, default=0, help="the studies' --sampler_seed")
    parser.add_argument("--keep", type=Path, help="keep the three studies in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        run(folder, "warm-up", 1, "--trials=1")
        seed = f"--sampler_seed={args.sampler_seed}"
        pruned_s, pruned = run(folder, "pruned", args.epochs, f"--trials={args.trials}", seed)
        values = yaml.safe_dump(
            [t.params for t in pruned.trials], default_flow_style=True
        )  # 1.0e-06, not 1e-06
        full_s, full = run(
            folder, "unpruned", args.epochs, f"--trials={args.trials}", "--pruner=none", f"--enqueue={values}"
        )
        grid_trials = args.grid_points**2
        grid_s, grid = run(
            folder, "grid", args.epochs, f"--trials={grid_trials}", "--pruner=none", "--sampler=grid", seed,
            f"--grid_points={args.grid_points}",
        )  # fmt: skip
    assert [t.params for t in full.trials] == [t.params for t in pruned.trials], "the same trials"
    states = [t.state.name.lower() for t in pruned.trials]
    ratio = pruned_s / full_s
    print(
        f"\n{args.trials} trials of {args.epochs} epochs, median pruner: {pruned_s:.0f} s "
        f"({states.count('pruned')} pruned); the same trials unpruned: {full_s:.0f} s; "
        f"time ratio {ratio:.2f} (target <= 0.6: {'met' if ratio <= 0.6 else 'missed'})"
    )
    print(
        f"best val/acc: pruned search {pruned.best_value:.4f}, unpruned {full.best_value:.4f}, "
        f"{args.grid_points}x{args.grid_points} grid {grid.best_value:.4f} ({grid_s:.0f} s); search - grid "
        f"{pruned.best_value - grid.best_value:+.4f} (target >= 0: "
        f"{'met' if pruned.best_value >= grid.best_value else 'missed'})"
    )


if __name__ == "__main__":
    main()
