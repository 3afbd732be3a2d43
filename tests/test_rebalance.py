"""``litvision analyze rebalance`` on a checkpoint, against an independent computation of post-hoc
logit adjustment and tau-normalisation (Menon et al. 2021; Kang et al. 2020)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT

from litvision.commands import main
from litvision.runs import load_run

# An LSTM on the bundled digits made long-tailed (ratio 20), trained 4 epochs: biased to the head
# classes, so that re-balancing changes predictions and the taus chosen are neither end of the grid.
TINY_LT_RUN = (
    "fit", f"--config={ROOT / 'configs/digits_lstm.yaml'}", "--model.backbone.init_args.hidden_size=32",
    "--model.optimizer.init_args.lr=0.01", "--data.imbalance=LongTailImbalance", "--data.imbalance.ratio=20",
    "--trainer.max_epochs=4", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
)  # fmt: skip
GRID = [round(0.1 * k, 1) for k in range(21)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rebalance")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        main(list(TINY_LT_RUN))
    return root / "lightning_logs" / "digits_lstm" / "version_0"


@torch.inference_mode()
def features_and_labels(net: torch.nn.Module, dataset) -> tuple[np.ndarray, np.ndarray]:
    x, y = zip(*(dataset[i] for i in range(len(dataset))))
    features = net.pre_logits(net.pooled_features(torch.stack(x)))
    return features.double().numpy(), np.asarray(y)


@pytest.mark.slow
def test_posthoc_adjustment_and_tau_norm_match_an_independent_computation(run_dir):
    main(["analyze", "rebalance", str(run_dir), "--epochs", "2"])
    result = json.loads((run_dir / "analysis" / "rebalance.json").read_text())

    checkpoint = torch.load(result["checkpoint"], weights_only=True)
    weight = checkpoint["state_dict"]["net.head.weight"].double().numpy()
    bias = checkpoint["state_dict"]["net.head.bias"].double().numpy()
    run = load_run(run_dir)
    data = run.datamodule
    data.setup("fit")
    data.setup("test")
    counts = np.asarray(data.train_class_counts, dtype=np.float64)
    assert list(result["train_class_counts"].values()) == counts.tolist()
    net = run.model.net.eval()
    val, val_y = features_and_labels(net, data.val_set)
    test, test_y = features_and_labels(net, data.test_set)
    prior = counts / counts.sum()

    def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
        return float((logits.argmax(axis=1) == labels).mean())

    def best_tau(logits_of) -> float:  # the first tau of the grid with the best validation accuracy
        scores = [accuracy(logits_of(val, t), val_y) for t in GRID]
        return GRID[int(np.argmax(scores))]

    def posthoc(f: np.ndarray, tau: float) -> np.ndarray:
        return f @ weight.T + bias - tau * np.log(prior)

    def tau_norm(f: np.ndarray, tau: float) -> np.ndarray:
        return f @ (weight / np.linalg.norm(weight, axis=1, keepdims=True) ** tau).T

    for key, logits_of in (("posthoc", posthoc), ("tau_norm", tau_norm)):
        tau = best_tau(logits_of)
        assert 0 < tau < 2, "a tau inside the grid: the choice is a real one"
        assert result["methods"][key]["tau"] == pytest.approx(tau), f"{key}: tau chosen on validation"
        assert result["methods"][key]["acc"] == pytest.approx(accuracy(logits_of(test, tau), test_y)), key
    assert result["methods"]["backbone"]["acc"] == pytest.approx(accuracy(test @ weight.T + bias, test_y))
    for method in result["methods"].values():
        assert set(method["shot_groups"]) <= {"many_shot", "medium_shot", "few_shot"}
        assert sum(g["classes"] for g in method["shot_groups"].values()) == 10
    rows = (run_dir / "analysis" / "rebalance.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["backbone", "posthoc", "tau_norm", "lws", "crt"]
