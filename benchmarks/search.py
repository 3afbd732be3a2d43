"""What pruning buys a search, on the bundled digits (docs/search.md, "Measured"). For each sampler seed:

1. a 20-trial search (TPE) over the learning rate and weight decay of configs/search/digits.yaml with the
   median pruner;
2. the same 20 trials (the same values, enqueued) without pruning;

and once, the 4x4 grid over the same ranges without pruning (its points do not depend on the seed). It
prints, per seed and as the median over the seeds, the time of (1) over (2) (target <= 0.6) and the best
validation accuracy of (1) minus the grid's (target >= 0). One process, one worker, after a one-trial
warm-up that is not timed; the validation split is 30% of the training images (431 of the 1,437), so
that one image moves the accuracy by 0.0023:

    python benchmarks/search.py                      # 5 seeds, 20 trials of 10 epochs: a quiet 2-core CPU
    python benchmarks/search.py --seeds 0 --trials 3 --epochs 2 --grid-points 2   # a rehearsal
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import yaml

from litvision.search.cli import main as search

ROOT = Path(__file__).resolve().parents[1]


def run(folder: Path, name: str, args: argparse.Namespace, *more: str) -> tuple[float, optuna.Study]:
    config, space = ROOT / "configs/digits_lstm.yaml", ROOT / "configs/search/digits.yaml"
    given = [f"--config={config}", f"--space={space}", f"--trainer.max_epochs={args.epochs}"]
    given += [f"--data.init_args.val_size={args.val_size}", f"--output={folder / name}", f"--study={name}"]
    started = time.perf_counter()
    search([*given, "--test_trials=none", *more])
    seconds = time.perf_counter() - started
    return seconds, optuna.load_study(study_name=name, storage=f"sqlite:///{folder / name / 'study.db'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="sampler seeds")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--grid-points", type=int, default=4)
    parser.add_argument("--val-size", type=float, default=0.3, help="the digits' validation fraction")
    parser.add_argument("--keep", type=Path, help="keep the studies in this folder")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        run(folder, "warm-up", argparse.Namespace(**{**vars(args), "epochs": 1}), "--trials=1")
        grid_s, grid = run(
            folder, "grid", args, f"--trials={args.grid_points**2}", "--pruner=none", "--sampler=grid",
            f"--grid_points={args.grid_points}",
        )  # fmt: skip
        for seed in args.seeds:
            pruned_s, pruned = run(
                folder, f"pruned-{seed}", args, f"--trials={args.trials}", f"--sampler_seed={seed}"
            )
            values = yaml.safe_dump([t.params for t in pruned.trials], default_flow_style=True)  # 1.0e-06
            full_s, full = run(folder, f"unpruned-{seed}", args, f"--trials={args.trials}", "--pruner=none",
                               f"--enqueue={values}")  # fmt: skip
            assert [t.params for t in full.trials] == [t.params for t in pruned.trials], "the same trials"
            pruned_n = sum(t.state == optuna.trial.TrialState.PRUNED for t in pruned.trials)
            rows.append(
                (seed, pruned_s, pruned_n, full_s, pruned_s / full_s, pruned.best_value, full.best_value)
            )
    print(f"\n{args.trials} trials of {args.epochs} epochs; the {args.grid_points}x{args.grid_points} grid: "
          f"best val/acc {grid.best_value:.4f} in {grid_s:.0f} s")  # fmt: skip
    print("| seed | pruned | unpruned | time ratio | best val/acc: search, unpruned | search - grid |")
    print("| --- | --- | --- | --- | --- | --- |")
    for seed, pruned_s, pruned_n, full_s, ratio, best, full_best in rows:
        print(f"| {seed} | {pruned_s:.0f} s, {pruned_n} of {args.trials} pruned | {full_s:.0f} s "
              f"| {ratio:.2f} | {best:.4f}, {full_best:.4f} | {best - grid.best_value:+.4f} |")  # fmt: skip
    ratio = statistics.median(r[4] for r in rows)
    gain = statistics.median(r[5] - grid.best_value for r in rows)
    met = sum(r[4] <= 0.6 for r in rows), sum(r[5] >= grid.best_value for r in rows)
    print(
        f"median over {len(rows)} seeds: time ratio {ratio:.2f} (target <= 0.6: "
        f"{'met' if ratio <= 0.6 else 'missed'}, at {met[0]} seeds); search - grid {gain:+.4f} (target >= 0: "
        f"{'met' if gain >= 0 else 'missed'}, at {met[1]} seeds)"
    )


if __name__ == "__main__":
    main()
