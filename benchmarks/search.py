"""What pruning buys a search, on the bundled digits (docs/search.md, "Measured"). For each sampler seed:

1. a 20-trial search (TPE) over the learning rate and weight decay of configs/search/digits.yaml with the
   median pruner, each trial trained as configs/digits_lstm.yaml says (40 epochs; --epochs to cut);
2. the same 20 trials (the same values, enqueued) without pruning;

and once, the 4x4 grid over the same ranges without pruning (its points do not depend on the seed). It
prints, per seed and as the median over the seeds, the time of (1) over (2) (target <= 0.6) and the best
validation accuracy of (1) minus the grid's (target >= 0). One process, one worker, after a one-trial
warm-up that is not timed; the validation split is 30% of the training images (432 of the 1,437), so
that one image moves the accuracy by 0.0023. A rehearsal: --seeds 0 --trials 3 --epochs 2 --grid-points 2.
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
from litvision.utils import lookup, markdown_table, read_yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/digits_lstm.yaml"


def run(folder: Path, name: str, args: argparse.Namespace, *more: str) -> tuple[float, optuna.Study]:
    given = [f"--config={CONFIG}", f"--space={ROOT / 'configs/search/digits.yaml'}"]
    given += [f"--trainer.max_epochs={args.epochs}"]
    given += [f"--data.init_args.val_size={args.val_size}", f"--output={folder / name}", f"--study={name}"]
    started = time.perf_counter()
    search([*given, "--test_trials=none", *more])
    seconds = time.perf_counter() - started
    return seconds, optuna.load_study(study_name=name, storage=f"sqlite:///{folder / name / 'study.db'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="sampler seeds")
    parser.add_argument("--trials", type=int, default=20)
    recipe = lookup(read_yaml(CONFIG, "config"), "trainer.max_epochs")[1]
    parser.add_argument("--epochs", type=int, default=recipe, help="a trial's epochs (the config's)")
    parser.add_argument("--grid-points", type=int, default=4)
    parser.add_argument("--val-size", type=float, default=0.3, help="the digits' validation fraction")
    parser.add_argument("--pruner", default="median", help="the search's --pruner (the target's: median)")
    parser.add_argument("--keep", type=Path, help="keep the studies in this folder")
    args = parser.parse_args()
    ratios, gains = [], []
    table = [["seed", "pruned", "unpruned", "time ratio", "best val/acc: search, unpruned", "search - grid"]]
    with tempfile.TemporaryDirectory() as tmp:
        folder, trials = args.keep or Path(tmp), f"--trials={args.trials}"
        run(folder, "warm-up", argparse.Namespace(**{**vars(args), "epochs": 1}), "--trials=1")
        grid_s, grid = run(folder, "grid", args, f"--trials={args.grid_points**2}", "--pruner=none",
                           "--sampler=grid", f"--grid_points={args.grid_points}")  # fmt: skip
        for seed in args.seeds:
            pruned_s, pruned = run(folder, f"pruned-{seed}", args, trials, f"--sampler_seed={seed}",
                                   f"--pruner={args.pruner}")  # fmt: skip
            values = yaml.safe_dump([t.params for t in pruned.trials], default_flow_style=True)  # 1.0e-06
            full_s, full = run(
                folder, f"unpruned-{seed}", args, trials, "--pruner=none", f"--enqueue={values}"
            )
            assert [t.params for t in full.trials] == [t.params for t in pruned.trials], "the same trials"
            ratios.append(pruned_s / full_s)
            gains.append(pruned.best_value - grid.best_value)
            stopped = sum(t.state == optuna.trial.TrialState.PRUNED for t in pruned.trials)
            table.append([seed, f"{pruned_s:.0f} s, {stopped} of {args.trials} pruned", f"{full_s:.0f} s",
                          f"{ratios[-1]:.2f}", f"{pruned.best_value:.4f}, {full.best_value:.4f}",
                          f"{gains[-1]:+.4f}"])  # fmt: skip
    print(f"\n{args.trials} trials of {args.epochs} epochs, {args.pruner} pruner; the {args.grid_points}x"
          f"{args.grid_points} grid: best val/acc {grid.best_value:.4f} in {grid_s:.0f} s\n")  # fmt: skip
    print(markdown_table(table))
    ratio, gain = statistics.median(ratios), statistics.median(gains)
    print(f"median over {len(ratios)} seeds: time ratio {ratio:.2f} (target <= 0.6: "
          f"{'met' if ratio <= 0.6 else 'missed'}, at {sum(r <= 0.6 for r in ratios)} seeds); search - grid "
          f"{gain:+.4f} (target >= 0: {'met' if gain >= 0 else 'missed'}, at {sum(g >= 0 for g in gains)} "
          "seeds)")  # fmt: skip


if __name__ == "__main__":
    main()
