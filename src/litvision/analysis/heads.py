"""New heads on a frozen backbone, after decoupled training (Kang et al., ICLR 2020; report 001, task C):
a class-weighted linear SVM and cRT (a linear layer re-trained with class-balanced sampling), compared
with the backbone's own head on the test split (``svm-head``); and the classifier re-balancing methods
of long-tailed learning (``rebalance``): post-hoc logit adjustment, tau-normalisation, LWS and cRT, with
their one parameter chosen on the validation split, in one table with many/medium/few-shot accuracy."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jsonargparse import ActionYesNo, Namespace
from matplotlib.figure import Figure
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import confusion_matrix
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from torch import nn
from torch.utils.data import BatchSampler, WeightedRandomSampler

from litvision.analysis.common import (
    Tool,
    add_features_argument,
    add_run_arguments,
    extract,
    open_run,
    run_outputs,
    split_dataset,
    write_run_outputs,
)
from litvision.errors import LitvisionError
from litvision.metrics import accuracies, shot_groups
from litvision.objectives import posthoc_adjusted
from litvision.parsing import Parser
from litvision.plotting import confusion_matrix_figure, plt
from litvision.utils import run_label

HEADS = {"backbone": "backbone's own head", "svm": "SVM head", "crt": "cRT head"}


TOOL = Tool(
    "svm-head",
    (
        "svm_head.png",
        "svm_head_confusion.png",
    ),
    "svm_head.json",
    scores=True,
)
# A table only; rebalance.json shows that it ran to the end.
REBALANCE_TOOL = Tool("rebalance", (), "rebalance.json", scores=True)
TOOLS = (TOOL, REBALANCE_TOOL)  # the two commands of this module


def add_parser(subcommands: Any) -> None:
    parser = Parser(
        config=True,
        description="Freeze the trained backbone, map the run's training split (as trained on, imbalance "
        "included) and the test split to features, and fit two new heads: a class-weighted linear SVM "
        "(scikit-learn) and cRT (a linear layer re-trained with class-balanced sampling, Kang et al. 2020). "
        "Scores them against the backbone's own head. Writes svm_head.json, svm_head.csv, svm_head.png, "
        "svm_head_confusion.png, svm_head.npz and crt_head.npz.",
    )
    add_run_arguments(parser)
    add_features_argument(parser, "pre-logits")
    parser.add_argument(
        "--class_weight",
        default="balanced",
        help="SVM class weights: 'balanced', 'none', or per class as CLASS=WEIGHT,... with class ids or "
        "names, e.g. 0=0.0001,1=0.001,7=0.01 (classes not named weigh 1)",
    )
    parser.add_argument("--C", type=float, default=1.0, help="SVM regularisation C")
    parser.add_argument("--max_iter", type=int, default=1000, help="SVM solver iterations")
    parser.add_argument("--crt_epochs", type=int, default=10, help="cRT training epochs")
    parser.add_argument("--crt_lr", type=float, default=0.1, help="cRT SGD learning rate, cosine")
    parser.add_argument("--crt_batch_size", type=int, default=256, help="cRT batch size")
    parser.add_argument(
        "--crt", action=ActionYesNo, default=True, help="fit cRT too (--no_crt: the SVM only)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the SVM solver and of cRT")
    subcommands.add_subcommand(
        TOOL.name, parser, help="class-weighted SVM and cRT heads on the frozen backbone (decoupled training)"
    )
    add_rebalance_parser(subcommands)


# Kang et al.'s weight decay for cRT's new head and LWS's scales.
KANG_WEIGHT_DECAY = 5e-4
# tau is chosen on the validation split from this grid (Kang et al.'s code searches 0..2 by 0.1).
TAU_GRID = np.round(np.linspace(0.0, 2.0, 21), 2)
REBALANCE = {
    "backbone": "backbone's own head",
    "posthoc": "post-hoc logit adjustment",
    "tau_norm": "tau-normalisation",
    "lws": "LWS",
    "crt": "cRT",
}


def add_rebalance_parser(subcommands: Any) -> None:
    parser = Parser(
        config=True,
        description="Freeze the trained network and re-balance its classifier for a balanced test: "
        "post-hoc logit adjustment (Menon et al. 2021: logits - tau log prior), tau-normalisation (Kang et "
        "al. 2020: class weights divided by their norm to the power tau, bias dropped), LWS (a learned "
        "scale per class on the fixed head, class-balanced sampling) and cRT (a new linear head, "
        "class-balanced sampling), both with Kang et al.'s settings. tau is chosen on the validation "
        "split, never the test split. Writes "
        "rebalance.json and rebalance.csv: accuracy, macro, many/medium/few-shot accuracy per method.",
    )
    add_run_arguments(parser)
    # Kang et al.'s settings: cRT 10 epochs, LWS 5, SGD 0.2 at batch 512 (the same rate per image as 0.1
    # at 256), weight decay 5e-4, a cosine schedule; an epoch draws the largest class's count per class.
    parser.add_argument("--epochs", type=int, default=10, help="cRT training epochs")
    parser.add_argument("--lws_epochs", type=int, default=5, help="LWS training epochs")
    parser.add_argument("--lr", type=float, default=0.1, help="LWS and cRT SGD learning rate")
    parser.add_argument("--batch_size", type=int, default=256, help="LWS and cRT batch size")
    parser.add_argument("--many_shot", type=int, default=100, help="many-shot: more training images")
    parser.add_argument("--few_shot", type=int, default=20, help="few-shot: fewer training images")
    parser.add_argument("--seed", type=int, default=0, help="seed of LWS and cRT")
    subcommands.add_subcommand(
        REBALANCE_TOOL.name, parser,
        help="classifier re-balancing on the frozen backbone: post-hoc adjustment, tau-norm, LWS, cRT",
    )  # fmt: skip


def tau_normalised(weight: np.ndarray, tau: float) -> np.ndarray:
    """Kang et al.'s tau-normalised classifier weights: each class's ``w_j / ||w_j|| ** tau``."""
    return weight / np.linalg.norm(weight, axis=1, keepdims=True) ** tau


def choose_tau(val_labels: np.ndarray, logits_of: Any) -> float:
    """The tau of :data:`TAU_GRID` with the best validation accuracy (the first, on ties)."""
    accuracy = [float((logits_of(tau).argmax(axis=1) == val_labels).mean()) for tau in TAU_GRID]
    return float(TAU_GRID[int(np.argmax(accuracy))])


def rebalance(args: Namespace) -> list[Path]:
    for name, value in (
        ("--epochs", args.epochs),
        ("--lws_epochs", args.lws_epochs),
        ("--batch_size", args.batch_size),
    ):
        if value < 1:
            raise LitvisionError(f"{name} {value} is invalid: it must be at least 1")
    if not args.lr > 0:
        raise LitvisionError(f"--lr {args.lr} is invalid: it must be above 0")
    run = open_run(args)
    names = run.model.class_names
    net, datamodule = run.model.net, run.datamodule
    head = getattr(net, "head", None)
    if not isinstance(head, nn.Linear):
        raise LitvisionError(
            f"the network's head is {type(head).__name__}, not a linear layer: tau-normalisation and LWS "
            "re-scale a linear classifier's weights"
        )
    batch_size, workers = datamodule.batch_size, datamodule.num_workers
    train = extract(net, split_dataset(datamodule, "train"), "pre-logits", batch_size, workers)
    if datamodule.val_set is None:
        raise LitvisionError(
            "the run has no validation split (val_size 0): tau is chosen on it, never on test"
        )
    val = extract(net, datamodule.val_set, "pre-logits", batch_size, workers)
    test = extract(net, split_dataset(datamodule, "test"), "pre-logits", batch_size, workers)
    counts = np.bincount(train.labels, minlength=len(names))
    if (counts == 0).any():
        empty = [names[c] for c in np.flatnonzero(counts == 0)]
        raise LitvisionError(f"the training split has no images of {', '.join(empty)}: nothing to re-balance")
    weight = head.weight.detach().cpu().numpy().astype(np.float64)
    bias = head.bias.detach().cpu().numpy().astype(np.float64) if head.bias is not None else 0.0

    def posthoc(extracted: Any, tau: float) -> np.ndarray:
        return posthoc_adjusted(
            torch.from_numpy(extracted.logits).double(), torch.from_numpy(counts), tau
        ).numpy()

    def tau_norm(extracted: Any, tau: float) -> np.ndarray:
        return extracted.features.astype(np.float64) @ tau_normalised(weight, tau).T

    taus = {
        "posthoc": choose_tau(val.labels, lambda t: posthoc(val, t)),
        "tau_norm": choose_tau(val.labels, lambda t: tau_norm(val, t)),
    }
    predictions = {
        "backbone": test.logits.argmax(axis=1),
        "posthoc": posthoc(test, taus["posthoc"]).argmax(axis=1),
        "tau_norm": tau_norm(test, taus["tau_norm"]).argmax(axis=1),
    }
    scales = train_lws(train.features, train.labels, weight, bias, args)
    predictions["lws"] = ((test.features @ weight.T + bias) * scales).argmax(axis=1)
    scaler = StandardScaler().fit(train.features)
    crt = train_crt(
        scaler.transform(train.features),
        train.labels,
        len(names),
        args.epochs,
        args.lr,
        args.batch_size,
        args.seed,
    )
    predictions["crt"] = predict(linear_head(*fold_scaler(*crt, scaler)), test.features)

    rows: dict[str, dict[str, Any]] = {}
    for key, predicted in predictions.items():
        s = score(test.labels, predicted, names)
        groups = shot_groups(list(s["per_class"].values()), counts.tolist(), args.many_shot, args.few_shot)
        rows[key] = {**s, "tau": taus.get(key), "shot_groups": groups}
    table = [["method", "tau", "acc", "acc_macro", "many_shot", "medium_shot", "few_shot"]]
    for key, r in rows.items():
        group = [r["shot_groups"].get(g, {}).get("acc") for g in ("many_shot", "medium_shot", "few_shot")]
        table.append([key, "" if r["tau"] is None else r["tau"], f"{r['acc']:.6f}", f"{r['acc_macro']:.6f}",
                      *("" if a is None else f"{a:.6f}" for a in group)])  # fmt: skip
        cells = "  ".join("    —" if a is None else f"{100 * a:5.2f}" for a in group)
        chosen = "" if r["tau"] is None else f" (tau {r['tau']:.1f})"
        print(f"{REBALANCE[key] + chosen:36s} test {100 * r['acc']:.2f}%  many/medium/few {cells}")
    outputs = run_outputs(args)
    outputs.csv("rebalance.csv", table)
    outputs.json(
        "rebalance.json",
        {
            "checkpoint": str(run.checkpoint),
            "train_class_counts": {n: int(c) for n, c in zip(names, counts)},
            "tau_grid": TAU_GRID.tolist(),
            "tau_chosen_on": "validation split",
            "shot_thresholds": {"many_shot": f"> {args.many_shot}", "few_shot": f"< {args.few_shot}"},
            "lws_scales": scales.tolist(),
            "training": {
                "crt_epochs": args.epochs,
                "lws_epochs": args.lws_epochs,
                "draws_per_epoch": int(counts.max()) * len(names),
                "lr": args.lr,
                "batch_size": args.batch_size,
                "weight_decay": KANG_WEIGHT_DECAY,
                "seed": args.seed,
            },
            "methods": rows,
        },
    )
    return write_run_outputs(outputs, args, run)


def train_lws(
    features: np.ndarray,
    labels: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | float,
    args: Namespace,
) -> np.ndarray:
    """LWS (Kang et al. 2020): one learned scale per class on the fixed head's logits, ``f_j (w_j x + b_j)``,
    trained with class-balanced sampling (and Kang et al.'s weight decay on the scales). Returns the
    scales."""
    logits = torch.from_numpy((features @ weight.T + bias).astype(np.float32))
    scales = nn.Parameter(torch.ones(weight.shape[0]))
    fit_balanced(
        lambda rows: logits[rows] * scales,
        [scales],
        labels,
        args.lws_epochs,
        args.lr,
        args.batch_size,
        args.seed,
        KANG_WEIGHT_DECAY,
    )
    return scales.detach().numpy().astype(np.float64)


def parse_class_weight(text: str, names: list[str]) -> dict[int, float] | str | None:
    """``balanced``, ``none`` or ``CLASS=WEIGHT,...`` (class ids or names) as scikit-learn's class_weight."""
    if text.strip().lower() in ("balanced", "none"):
        return None if text.strip().lower() == "none" else "balanced"
    weights: dict[int, float] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if key in names:
            index = names.index(key)
        elif key.isdigit() and int(key) < len(names):
            index = int(key)
        else:
            raise LitvisionError(
                f"--class_weight {text!r}: {key!r} is not a class; use ids 0-{len(names) - 1} or names "
                f"({', '.join(names)}), as CLASS=WEIGHT,..."
            )
        try:
            weight = float(value) if sep else float("nan")
        except ValueError:
            weight = float("nan")
        if not weight > 0:
            raise LitvisionError(f"--class_weight {text!r}: the weight of {key!r} must be a number above 0")
        weights[index] = weight
    return weights


def main(args: Namespace) -> list[Path]:
    for name, value in (("--C", args.C), ("--crt_lr", args.crt_lr)):
        if not value > 0:
            raise LitvisionError(f"{name} {value} is invalid: it must be above 0")
    for name, value in (
        ("--crt_epochs", args.crt_epochs),
        ("--crt_batch_size", args.crt_batch_size),
        ("--max_iter", args.max_iter),
    ):
        if value < 1:
            raise LitvisionError(f"{name} {value} is invalid: it must be at least 1")
    run = open_run(args)
    names = run.model.class_names
    class_weight = parse_class_weight(args.class_weight, names)
    net, datamodule = run.model.net, run.datamodule
    batch_size, workers = datamodule.batch_size, datamodule.num_workers
    train = extract(net, split_dataset(datamodule, "train"), args.features, batch_size, workers)
    test = extract(net, split_dataset(datamodule, "test"), args.features, batch_size, workers)
    counts = np.bincount(train.labels, minlength=len(names))
    if (counts == 0).any():
        empty = [names[c] for c in np.flatnonzero(counts == 0)]
        raise LitvisionError(
            f"the training split has no images of {', '.join(empty)}: a head cannot learn them"
        )

    # Both heads see standardised features (SVMs need them; it also makes one cRT learning rate fit every
    # backbone); the scaling is folded into the saved weights.
    scaler = StandardScaler().fit(train.features)
    train_z = scaler.transform(train.features)
    svm = LinearSVC(C=args.C, class_weight=class_weight, max_iter=args.max_iter, random_state=args.seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        svm.fit(train_z, train.labels)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    if not converged:
        print(f"note: the SVM did not converge in {args.max_iter} iterations; try a larger --max_iter")
    coef = svm.coef_ if len(names) > 2 else np.concatenate([-svm.coef_, svm.coef_])
    intercept = svm.intercept_ if len(names) > 2 else np.concatenate([-svm.intercept_, svm.intercept_])
    heads = {"svm": fold_scaler(coef, intercept, scaler)}
    if args.crt:
        weight, bias = train_crt(
            train_z, train.labels, len(names), args.crt_epochs, args.crt_lr, args.crt_batch_size, args.seed
        )
        heads["crt"] = fold_scaler(weight, bias, scaler)

    predictions = {"backbone": test.logits.argmax(axis=1)}
    for key, (weight, bias) in heads.items():
        predictions[key] = predict(linear_head(weight, bias), test.features)
    scores = {key: score(test.labels, p, names) for key, p in predictions.items()}
    for key, s in scores.items():
        print(f"{HEADS[key]:22s} test accuracy {100 * s['acc']:.2f}%  macro {100 * s['acc_macro']:.2f}%")

    outputs = run_outputs(args)
    for key, (weight, bias) in heads.items():
        outputs.npz(
            f"{key}_head.npz",
            {
                "weight": weight,
                "bias": bias,
                "classes": np.array(names),
                "features": np.array(args.features),
            },
        )
    svm_counts = confusion_matrix(test.labels, predictions["svm"], labels=np.arange(len(names)))
    label = f"{run_label(run.directory)}, {run.checkpoint.name}"
    outputs.figure(
        "svm_head.png", "analysis/svm_head", heads_figure(scores, names, counts, args.features, label)
    )
    accuracy = 100 * scores["svm"]["acc"]
    title = f"SVM head on frozen {args.features} features: test accuracy {accuracy:.2f}%\n{label}"
    outputs.figure(
        "svm_head_confusion.png",
        "analysis/svm_head_confusion",
        confusion_matrix_figure(svm_counts, names, title, annotate="shares"),
    )
    outputs.csv(
        "svm_head.csv",
        [
            ["class", "train_images", *scores],
            *(
                [n, int(counts[c]), *(f"{s['per_class'][n]:.6f}" for s in scores.values())]
                for c, n in enumerate(names)
            ),
        ],
    )
    weights_used = (
        {names[c]: w for c, w in class_weight.items()} if isinstance(class_weight, dict) else class_weight
    )
    outputs.json(
        "svm_head.json",
        {
            "checkpoint": str(run.checkpoint),
            "features": args.features,
            "num_features": int(train.features.shape[1]),
            "train_images": int(len(train.labels)),
            "test_images": int(len(test.labels)),
            "train_class_counts": {n: int(c) for n, c in zip(names, counts)},
            "svm": {
                "C": args.C,
                "class_weight": weights_used,
                "max_iter": args.max_iter,
                "converged": converged,
            },
            "crt": {"epochs": args.crt_epochs, "lr": args.crt_lr, "batch_size": args.crt_batch_size}
            if args.crt
            else None,
            "seed": args.seed,
            "heads": scores,
            "svm_confusion_matrix": svm_counts,
        },
    )
    return write_run_outputs(outputs, args, run)


def fold_scaler(
    weight: np.ndarray, bias: np.ndarray, scaler: StandardScaler
) -> tuple[np.ndarray, np.ndarray]:
    """A head on standardised features as one on raw features: W (x - m) / s + b = (W / s) x + b'."""
    folded = weight / scaler.scale_
    return folded.astype(np.float32), (bias - folded @ scaler.mean_).astype(np.float32)


def linear_head(weight: np.ndarray, bias: np.ndarray) -> nn.Linear:
    """An ``nn.Linear`` holding the given weight (classes x features) and bias."""
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(np.asarray(weight, dtype=np.float32)))
        head.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32)))
    return head


def load_head(path: str | Path) -> nn.Linear:
    """A head saved by ``svm-head`` (``svm_head.npz``, ``crt_head.npz``), read without pickle, as an
    ``nn.Linear`` from the features it was fitted on (see its ``features`` entry) to class scores."""
    with np.load(path, allow_pickle=False) as data:
        return linear_head(data["weight"], data["bias"])


@torch.inference_mode()
def predict(head: nn.Linear, features: np.ndarray) -> np.ndarray:
    return head(torch.from_numpy(features.astype(np.float32))).argmax(dim=1).numpy()


def score(labels: np.ndarray, predicted: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Accuracy, macro and per-class accuracy (:func:`litvision.metrics.accuracies`)."""
    values = accuracies(confusion_matrix(labels, predicted, labels=np.arange(len(names))))
    return {
        "acc": values["acc"].item(),
        "acc_macro": values["acc_macro"].item(),
        "per_class": dict(zip(names, values["acc_class"].tolist())),
    }


def train_crt(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """cRT: a new linear layer trained on fixed features with class-balanced sampling (every class drawn
    equally often), SGD with momentum and a cosine schedule. Returns its weight and bias."""
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's random state
        torch.manual_seed(seed)
        head = nn.Linear(features.shape[1], num_classes)
    x = torch.from_numpy(features.astype(np.float32))
    fit_balanced(
        lambda rows: head(x[rows]),
        list(head.parameters()),
        labels,
        epochs,
        lr,
        batch_size,
        seed,
        KANG_WEIGHT_DECAY,
    )
    return head.weight.detach().numpy().copy(), head.bias.detach().numpy().copy()


def fit_balanced(
    logits_of: Any,
    parameters: list[nn.Parameter],
    labels: np.ndarray,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.0,
) -> None:
    """Train ``parameters`` so that ``logits_of(rows)`` fits ``labels[rows]``, drawing rows with
    class-balanced sampling (every class equally often), as many per class and epoch as the largest
    class has images (Kang et al.'s class-aware sampler's epoch): SGD with momentum, a cosine schedule."""
    counts = np.bincount(labels)
    weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
    draws = int(counts.max()) * int((counts > 0).sum())
    generator = torch.Generator().manual_seed(seed)
    sampler = WeightedRandomSampler(weights, num_samples=draws, replacement=True, generator=generator)
    # Whole batches of indices into the feature tensors: no per-sample dataset reads and collation.
    batches = BatchSampler(sampler, batch_size, drop_last=False)
    y = torch.from_numpy(labels).long()
    optimizer = torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(batches))
    for _ in range(epochs):
        for batch in batches:
            loss = F.cross_entropy(logits_of(batch), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()


def heads_figure(
    scores: dict[str, dict[str, Any]], names: list[str], counts: np.ndarray, features: str, label: str
) -> Figure:
    """Per-class test accuracy of each head as grouped bars, training images per class under the names."""
    fig, ax = plt.subplots(figsize=(max(7.0, 0.9 * len(names) + 2), 4.8), dpi=100)
    width = 0.8 / len(scores)
    x = np.arange(len(names))
    for k, (key, s) in enumerate(scores.items()):
        values = [100 * s["per_class"][n] for n in names]
        legend = f"{HEADS[key]}: {100 * s['acc']:.2f}% (macro {100 * s['acc_macro']:.2f}%)"
        ax.bar(x + (k - (len(scores) - 1) / 2) * width, values, width, label=legend, color=f"C{k}")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{n}\n({c})" for n, c in zip(names, counts)], fontsize=8)
    ax.set(
        ylim=(0, 105),
        ylabel="test accuracy (%)",
        xlabel="class (training images)",
        title=f"Heads on frozen {features} features, per class\n{label}",
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
