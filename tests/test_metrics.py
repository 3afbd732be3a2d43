"""Per-class accuracy and confusion matrices agree with scikit-learn's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, recall_score
from test_data import write_images

from litvision.analysis.heads import score
from litvision.callbacks import TestReport
from litvision.commands import main
from litvision.data import SyntheticDataModule
from litvision.models import SimpleCNN
from litvision.module import ImageClassifier
from litvision.utils import read_scalars


def constructed_predictions(num_classes: int = 5, n: int = 400, seed: int = 0):
    """Labels with unequal class sizes (one class absent from the predictions) and logits that are
    right about 60% of the time."""
    g = torch.Generator().manual_seed(seed)
    target = torch.multinomial(torch.tensor([0.4, 0.25, 0.15, 0.15, 0.05]), n, replacement=True, generator=g)
    preds = torch.where(
        torch.rand(n, generator=g) < 0.6, target, torch.randint(0, num_classes - 1, (n,), generator=g)
    )
    preds[preds == num_classes - 1] = 0  # the last class is never predicted
    logits = torch.randn(n, num_classes, generator=g)
    logits[torch.arange(n), preds] += 10
    return logits, target, preds


def test_epoch_metrics_match_sklearn():
    logits, target, preds = constructed_predictions()
    assert (target == 4).any() and not (preds == 4).any()
    model = ImageClassifier(SimpleCNN, num_classes=5, class_names=list("abcde"))
    metrics = model.test_metrics
    for chunk in range(0, len(target), 64):  # updated per step, computed once
        metrics.update(logits[chunk : chunk + 64], target[chunk : chunk + 64])
    values = metrics.compute()
    y, p = target.numpy(), preds.numpy()
    assert values["acc"].item() == pytest.approx(accuracy_score(y, p))
    assert values["acc_macro"].item() == pytest.approx(balanced_accuracy_score(y, p))
    assert values["acc_class"].numpy() == pytest.approx(recall_score(y, p, average=None))
    assert (values["confmat"].numpy() == confusion_matrix(y, p, labels=range(5))).all()


def test_test_report_matches_sklearn():
    _, target, preds = constructed_predictions(seed=1)
    y, p = target.numpy(), preds.numpy()
    report = TestReport.results(confusion_matrix(y, p, labels=range(5)).tolist(), list("abcde"))
    assert report["acc"] == pytest.approx(accuracy_score(y, p))
    assert report["acc_macro"] == pytest.approx(balanced_accuracy_score(y, p))
    recalls = recall_score(y, p, average=None)
    assert [report["per_class"][c]["acc"] for c in "abcde"] == pytest.approx(recalls)
    assert sum(v["support"] for v in report["per_class"].values()) == len(y)


def test_logged_per_class_test_accuracy_matches_predictions(tmp_path):
    """End to end: what trainer.test logs per class equals sklearn on trainer.predict's predictions, and
    its loss is the mean over the test images (the short last batch weighs by its size)."""
    torch.manual_seed(0)
    data = SyntheticDataModule(
        num_classes=4, input_shape=(1, 8, 8), train_size=64, test_size=90, batch_size=16
    )
    model = ImageClassifier(SimpleCNN, num_classes=4, input_shape=(1, 8, 8), class_names=data.class_names)
    trainer = Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data, verbose=False)
    logged = trainer.callback_metrics
    probs = torch.cat(trainer.predict(model, datamodule=data))
    y = torch.tensor([data.test_set[i][1] for i in range(len(data.test_set))]).numpy()
    p = probs.argmax(1).numpy()
    recalls = recall_score(y, p, average=None, labels=range(4), zero_division=0)
    for name, recall in zip(data.class_names, recalls):
        assert logged[f"test/acc_class/{name}"].item() == pytest.approx(recall)
    assert logged["test/acc"].item() == pytest.approx(accuracy_score(y, p))
    assert (model.confusion["test"].numpy() == confusion_matrix(y, p, labels=range(4))).all()
    nll = -torch.log(probs[torch.arange(len(y)), torch.as_tensor(y)]).mean()
    assert logged["test/loss"].item() == pytest.approx(nll.item(), rel=1e-5)


def run_with_a_missing_and_an_unpredicted_class(cwd: Path) -> tuple[dict, dict[str, float]]:
    """A real run tested on an image folder whose test split lacks class "d", with a checkpoint whose
    head never predicts class "c" (its bias pushed down): test_results.json and the TensorBoard scalars."""
    write_images(cwd / "images/train", {"a": 6, "b": 6, "c": 6, "d": 6}, (8, 8))
    write_images(cwd / "images/test", {"a": 5, "b": 4, "c": 3}, (8, 8))  # no "d"
    common = [
        "--data=litvision.data.ImageFolderDataModule", "--data.data_dir=images", "--data.val_size=0",
        "--data.batch_size=8", "--data.num_workers=0", "--model.backbone=litvision.models.SimpleCNN",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    ]  # fmt: skip
    main(["fit", *common, "--trainer.max_epochs=1", "--test_after_fit=false"])
    runs = cwd / "lightning_logs/images-SimpleCNN"  # named after its data and network
    checkpoint = torch.load(runs / "version_0/checkpoints/last.ckpt", weights_only=True)
    checkpoint["state_dict"]["net.head.bias"][2] = -1e9
    torch.save(checkpoint, cwd / "never_c.ckpt")
    main(["test", *common, f"--ckpt_path={cwd / 'never_c.ckpt'}"])
    run = runs / "version_1"
    results = json.loads((run / "test_results.json").read_text())
    confmat = np.array(results["confusion_matrix"])
    assert confmat[3].sum() == 0 and confmat[:, 2].sum() == 0, (
        "d absent from the test split, c from predictions"
    )
    return results, {tag: values[-1].value for tag, values in read_scalars(run).items()}


def test_tensorboard_and_test_results_agree_with_a_missing_and_an_unpredicted_class(in_tmp):
    results, logged = run_with_a_missing_and_an_unpredicted_class(in_tmp)
    y, p = labels_and_predictions(results["confusion_matrix"])
    assert logged["test/acc"] == pytest.approx(results["acc"]) and results["acc"] == pytest.approx(
        accuracy_score(y, p)
    )
    for name in "abc":  # the classes with test images; "c" is never predicted
        assert logged[f"test/acc_class/{name}"] == pytest.approx(results["per_class"][name]["acc"])
    assert results["per_class"]["c"]["acc"] == 0 and results["per_class"]["d"]["support"] == 0


def test_macro_accuracy_is_the_mean_over_the_classes_with_test_images(in_tmp):
    """The documented definition (litvision.metrics.accuracies, #16), as scikit-learn's balanced
    accuracy: a class with no test image has no accuracy to average, even when it is predicted. Before
    #16, TensorBoard's test/acc_macro counted a class predicted but absent and test_results.json every
    class; on a real run, the two now agree with each other and with scikit-learn."""
    results, logged = run_with_a_missing_and_an_unpredicted_class(in_tmp)
    y, p = labels_and_predictions(results["confusion_matrix"])
    assert logged["test/acc_macro"] == pytest.approx(results["acc_macro"])
    assert results["acc_macro"] == pytest.approx(balanced_accuracy_score(y, p))


def labels_and_predictions(confmat: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """One (label, prediction) pair per image counted in a confusion matrix (rows: true class)."""
    pairs = [(t, q) for t, row in enumerate(confmat) for q, n in enumerate(row) for _ in range(n)]
    return np.array([t for t, _ in pairs]), np.array([q for _, q in pairs])


def test_shot_groups_follow_the_thresholds():
    """Many-shot: more than ``many_shot`` training images; few-shot: fewer than ``few_shot``; the rest,
    bounds included, medium-shot (Liu et al. 2019)."""
    confmat = [[1, 0, 0, 0], [0, 2, 0, 0], [1, 0, 3, 0], [0, 0, 0, 4]]  # accuracies 1, 1, 0.75, 1
    results = TestReport.results(confmat, list("abcd"))
    groups = TestReport(many_shot=100, few_shot=20).shot_groups(results, [101, 100, 20, 19])["shot_groups"]
    assert groups == {
        "many_shot": {"acc": 1.0, "classes": 1},
        "medium_shot": {"acc": pytest.approx(0.875), "classes": 2},
        "few_shot": {"acc": 1.0, "classes": 1},
    }
    assert [v["train_images"] for v in results["per_class"].values()] == [101, 100, 20, 19]


def test_macro_accuracy_is_balanced_accuracy_where_a_class_is_absent():
    """One definition (litvision.metrics.accuracies) for training, the test report and the heads:
    scikit-learn's balanced accuracy, which leaves out a class with no image even if it is predicted."""
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0, 2, 0, 1, 1, 2])  # class 2: no image, predicted twice
    confmat = confusion_matrix(y, p, labels=range(3))
    logits = torch.nn.functional.one_hot(torch.from_numpy(p), 3).float()
    counts = ImageClassifier(SimpleCNN, num_classes=3).test_metrics
    counts.update(logits, torch.from_numpy(y))
    expected = balanced_accuracy_score(y, p)
    assert counts.compute()["acc_macro"].item() == pytest.approx(expected)
    assert TestReport.results(confmat.tolist(), list("abc"))["acc_macro"] == pytest.approx(expected)
    assert score(y, p, list("abc"))["acc_macro"] == pytest.approx(expected)


def test_tensorboard_and_test_results_agree_when_the_test_split_lacks_a_class(in_tmp):
    write_images(in_tmp / "data" / "train", {"a": 12, "b": 12, "c": 12}, (8, 8))
    write_images(in_tmp / "data" / "test", {"a": 6, "b": 6}, (8, 8))  # no image of class c
    main(["fit", "--data=litvision.data.ImageFolderDataModule", "--data.data_dir=data",
          "--data.image_size=8", "--data.val_size=6", "--data.batch_size=12",
          "--model.backbone=litvision.models.SimpleCNN", "--trainer.max_epochs=1",
          "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"])  # fmt: skip
    (run,) = (in_tmp / "lightning_logs").glob("*/version_0")
    results = json.loads((run / "test_results.json").read_text())
    logged = read_scalars(run, ["test/acc_macro"])["test/acc_macro"][-1].value
    assert logged == pytest.approx(results["acc_macro"], abs=1e-6)
    per_class = [results["per_class"][c]["acc"] for c in "ab"]
    assert results["acc_macro"] == pytest.approx(sum(per_class) / 2)
