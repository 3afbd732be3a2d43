"""litvision analyze: every tool on a tiny CNN trained for a few steps, through the real entry point."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from litvision.analysis.feature_maps import capture, image_figure, kind_of, output_shapes
from litvision.analysis.heads import load_head
from litvision.commands import main
from litvision.models import ARCHITECTURES, VGG, CifarResNet, DenseNet, TorchvisionNet
from litvision.plotting import plt
from litvision.runs import load_run
from litvision.utils import read_scalars

CLASSES = ["class_0", "class_1", "class_2", "class_3"]
# A SimpleCNN on 4 classes of 16x16 synthetic images; class 0 keeps half its training images, so that
# the training split the heads are fitted on is the imbalanced one the run trained on.
TINY_RUN = (
    "fit", f"--config={ROOT / 'configs/cnn_cifar.yaml'}",
    "--model.backbone.init_args.channels=[4,8]", "--model.backbone.init_args.hidden=[16]",
    "--model.optimizer.init_args.lr=0.01",
    "--data=litvision.data.SyntheticDataModule", "--data.num_classes=4", "--data.input_shape=[3,16,16]",
    "--data.train_size=192", "--data.val_size=32", "--data.test_size=48", "--data.batch_size=16",
    "--data.num_workers=0",
    "--data.imbalance=litvision.data.StepImbalance", "--data.imbalance.init_args.classes=[0]",
    "--data.imbalance.init_args.fraction=0.5",
    "--trainer.max_epochs=3", "--trainer.accelerator=cpu", "--trainer.log_every_n_steps=1",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
)  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("analysis")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        main(list(TINY_RUN))
    return root / "lightning_logs" / "cnn_cifar" / "version_0"


def analyze(*args: object) -> None:
    main(["analyze", *map(str, args)])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def image_tags(run_dir: Path) -> set[str]:
    return set(EventAccumulator(str(run_dir), size_guidance={"images": 0}).Reload().Tags()["images"])


def assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 200


def test_analyze_lists_its_tools(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["analyze", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for tool in ("tsne", "feature-maps", "confusion", "svm-head", "curves", "compare", "loss-landscape"):
        assert tool in out


def test_tsne_embeds_n_random_test_images(run_dir):
    analyze("tsne", run_dir, "--samples", 30, "--perplexity", 5, "--seed", 1)
    rows = read_csv(run_dir / "analysis" / "tsne.csv")
    assert len(rows) == 30
    indices = [int(r["index"]) for r in rows]
    assert len(set(indices)) == 30 and all(0 <= i < 48 for i in indices)
    # The synthetic test split labels image i as i % 4: each row's label is that of its image.
    assert all(
        int(r["label"]) == int(r["index"]) % 4 and r["class"] == CLASSES[int(r["label"])] for r in rows
    )
    assert np.isfinite([[float(r["x"]), float(r["y"])] for r in rows]).all()
    assert_png(run_dir / "analysis" / "tsne.png")
    assert "analysis/tsne" in image_tags(run_dir)

    analyze(
        "tsne", run_dir, "--samples", 1000, "--perplexity", 5, "--output", run_dir / "all", "--no_tensorboard"
    )
    assert len(read_csv(run_dir / "all" / "tsne.csv")) == 48  # a small split is used whole


def test_feature_maps_record_the_default_stages(run_dir):
    analyze("feature-maps", run_dir, "--channels", 4)
    folder = run_dir / "analysis"
    info = json.loads((folder / "feature_maps.json").read_text())
    assert [image["index"] for image in info["images"]] == [0, 1, 2, 3]  # first image of each class
    layers = [layer["name"] for layer in info["layers"]]
    # SimpleCNN: conv + ReLU + max-pool twice: the last layer at each resolution, then the pooled features.
    assert layers == ["conv.1", "conv.4", "conv.5", "fc"]
    assert [layer["kind"] for layer in info["layers"]] == ["maps", "maps", "maps", "profile"]
    for index in range(4):
        assert_png(folder / f"feature_maps_{index}.png")
    run = load_run(run_dir)
    run.datamodule.setup("test")
    image = run.datamodule.test_set[2][0]
    with np.load(folder / "feature_maps.npz", allow_pickle=False) as arrays:
        assert arrays["2/conv.1"].shape == (4, 16, 16) and arrays["2/conv.5"].shape == (8, 4, 4)
        with torch.no_grad():
            features = run.model.net.pooled_features(image[None])[0].numpy()
        np.testing.assert_allclose(arrays["2/fc"], features, rtol=1e-5, atol=1e-6)
    assert "analysis/feature_maps/2" in image_tags(run_dir)


def test_feature_maps_reject_an_unknown_layer_in_one_line(run_dir, capsys):
    output = run_dir / "never"
    with pytest.raises(SystemExit) as exit_:
        analyze("feature-maps", run_dir, "--layers", "conv.1", "conv9", "--output", output)
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("litvision analyze: error: unknown layer 'conv9'")
    assert "conv.0" in err and "fc.1" in err and "head" in err  # the valid names
    assert not output.exists()  # nothing partial written


def test_confusion_rows_sum_to_one_and_agree_with_the_test_results(run_dir):
    analyze("confusion", run_dir)
    folder = run_dir / "analysis"
    counts = [[int(v) for v in list(row.values())[1:]] for row in read_csv(folder / "confusion.csv")]
    shares = [
        [float(v) for v in list(row.values())[1:]] for row in read_csv(folder / "confusion_normalized.csv")
    ]
    assert [row["true \\ predicted"] for row in read_csv(folder / "confusion.csv")] == CLASSES
    np.testing.assert_allclose(np.sum(shares, axis=1), 1.0, atol=1e-5)
    # The same best checkpoint on the same test split as the test that ended fit.
    assert counts == json.loads((run_dir / "test_results.json").read_text())["confusion_matrix"]
    pairs = json.loads((folder / "confusion.json").read_text())["most_confused"]
    assert [p["share"] for p in pairs] == sorted((p["share"] for p in pairs), reverse=True)
    for p in pairs:
        a, b = (CLASSES.index(c) for c in p["classes"])
        assert (p["a_as_b"], p["b_as_a"]) == (counts[a][b], counts[b][a])
    assert_png(folder / "confusion.png")


def test_confusion_of_the_last_checkpoint_on_the_validation_split(run_dir, tmp_path):
    """``--checkpoint last --split val``: the last weights' predictions on the 32 validation images."""
    analyze("confusion", run_dir, "--checkpoint", "last", "--split", "val", "--output", tmp_path / "val")
    counts = [[int(v) for v in list(row.values())[1:]] for row in read_csv(tmp_path / "val/confusion.csv")]
    run = load_run(run_dir, "last")
    run.datamodule.setup("fit")
    val = run.datamodule.val_set
    images = torch.stack([val[i][0] for i in range(len(val))])
    labels = [val[i][1] for i in range(len(val))]
    run.model.eval()
    with torch.no_grad():
        predicted = run.model(images).argmax(dim=1).numpy()
    assert len(val) == 32 and counts == confusion_matrix(labels, predicted, labels=range(4)).tolist()


def test_svm_head_is_scikit_learns_svm_on_the_same_features(run_dir):
    analyze("svm-head", run_dir, "--class_weight", "0=2,class_1=0.5", "--crt_epochs", 3)
    folder = run_dir / "analysis"
    results = json.loads((folder / "svm_head.json").read_text())
    assert results["svm"]["class_weight"] == {"class_0": 2.0, "class_1": 0.5}
    run = load_run(run_dir)
    # Fitted on the training split as trained on: class 0 kept half of its images.
    run.datamodule.setup("fit")
    assert list(results["train_class_counts"].values()) == run.datamodule.kept_class_counts
    assert results["train_class_counts"]["class_0"] < results["train_class_counts"]["class_1"]

    run.datamodule.setup("test")
    train = run.datamodule.train_set  # the run's config has no augmentation: eval-transformed images
    train_images = torch.stack([train[i][0] for i in range(len(train))])
    train_labels = np.array([train[i][1] for i in range(len(train))])
    images = torch.stack([run.datamodule.test_set[i][0] for i in range(48)])
    labels = np.arange(48) % 4
    net = run.model.net
    with torch.no_grad():
        train_features = net.pre_logits(net.pooled_features(train_images)).numpy()
        features = net.pre_logits(net.pooled_features(images))
        for key in ("svm", "crt"):
            head = load_head(folder / f"{key}_head.npz")
            predicted = head(features).argmax(dim=1).numpy()
            assert results["heads"][key]["acc"] == accuracy_score(labels, predicted)
            if key == "svm":
                saved_svm = head(features).numpy()
    # An SVM fitted here by scikit-learn on the same features, with the same options, scores the test
    # images as the tool's saved head does (its standardisation folded into its weights).
    independent = make_pipeline(
        StandardScaler(), LinearSVC(C=1.0, class_weight={0: 2.0, 1: 0.5}, max_iter=1000, random_state=0)
    ).fit(train_features, train_labels)
    np.testing.assert_allclose(
        saved_svm, independent.decision_function(features.numpy()), rtol=1e-3, atol=1e-3
    )
    test_results = json.loads((run_dir / "test_results.json").read_text())
    assert results["heads"]["backbone"]["acc"] == pytest.approx(test_results["acc"])
    rows = read_csv(folder / "svm_head.csv")
    assert [r["class"] for r in rows] == CLASSES and set(rows[0]) == {
        "class",
        "train_images",
        "backbone",
        "svm",
        "crt",
    }
    assert_png(folder / "svm_head.png")
    assert_png(folder / "svm_head_confusion.png")


def test_svm_head_rejects_an_unknown_class_weight(run_dir, capsys):
    with pytest.raises(SystemExit):
        analyze("svm-head", run_dir, "--class_weight", "cat=2", "--output", run_dir / "never")
    err = capsys.readouterr().err
    assert "'cat' is not a class" in err and "class_0" in err and not (run_dir / "never").exists()


def test_curves_plot_every_epoch_of_one_or_many_runs(run_dir, tmp_path, capsys):
    analyze("curves", run_dir)
    rows = read_csv(run_dir / "analysis" / "curves.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(r[k] for r in rows for k in ("train_loss", "val_loss", "train_acc", "val_acc"))
    best = max(float(r["val_acc"]) for r in rows)
    best_checkpoint = next((run_dir / "checkpoints").glob("best-*.ckpt")).stem
    assert best_checkpoint.endswith(f"val_acc{best:.4f}")  # the checkpoint callback saw the same value
    assert "analysis/curves" in image_tags(run_dir)

    with pytest.raises(SystemExit):
        analyze("curves", run_dir, run_dir)
    assert "give --output" in capsys.readouterr().err
    analyze("curves", run_dir, run_dir, "--names", "a", "b", "--output", tmp_path)
    assert [r["run"] for r in read_csv(tmp_path / "curves.csv")] == ["a"] * 3 + ["b"] * 3
    assert_png(tmp_path / "curves.png")


def test_compare_tabulates_runs_with_or_without_run_info(run_dir, tmp_path):
    bare = tmp_path / "old" / "version_0"  # a run from before run_info.json
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("analysis", "run_info.json"))
    analyze("compare", run_dir, bare, "--names", "new", "old", "--output", tmp_path / "table")
    new, old = read_csv(tmp_path / "table_runs.csv")
    info = json.loads((run_dir / "run_info.json").read_text())
    net = load_run(run_dir).model.net
    assert int(new["parameters"]) == info["num_parameters"] == sum(p.numel() for p in net.parameters())
    assert old["parameters"] == new["parameters"] and old["epochs"] == new["epochs"] == "3"
    test_acc = json.loads((run_dir / "test_results.json").read_text())["acc"]
    assert new["test_acc"] == old["test_acc"] == f"{100 * test_acc:.2f}"
    # What TensorBoard shows, per epoch.
    val_acc = [e.value for e in read_scalars(run_dir, ["val/acc"])["val/acc"]]
    assert new["val_acc_best"] == f"{100 * max(val_acc):.2f}"
    assert new["val_acc_final"] == f"{100 * val_acc[-1]:.2f}"
    assert float(old["wall_time_s"]) > 0
    per_class = list(csv.reader((tmp_path / "table.csv").open()))
    assert per_class[0] == ["class", "new", "old"] and [r[0] for r in per_class[1:5]] == CLASSES


def test_loss_landscape_records_every_step_of_every_run(tmp_path):
    config = yaml.safe_load((ROOT / "configs/analysis/loss_landscape.yaml").read_text())
    config["data"] = {
        "class_path": "litvision.data.SyntheticDataModule",
        "init_args": {
            "num_classes": 4,
            "input_shape": [3, 32, 32],
            "train_size": 32,
            "val_size": 0,
            "batch_size": 4,
        },
    }
    for variant in config["variants"]:  # VGG-A itself, its hidden layer cut from 512 to 32 units
        variant["backbone"]["init_args"]["hidden"] = 32
    path = tmp_path / "landscape.yaml"
    path.write_text(yaml.safe_dump(config))
    output = tmp_path / "out"
    analyze(
        "loss-landscape",
        "--config",
        path,
        "--steps",
        3,
        "--learning_rates",
        0.05,
        0.01,
        "--device",
        "cpu",
        "--output",
        output,
    )
    rows = read_csv(output / "loss_landscape.csv")
    assert len(rows) == 3 * 2 * 2
    assert {(r["variant"], r["learning_rate"]) for r in rows} == {
        (v, lr) for v in ("VGG-A", "VGG-A with BatchNorm") for lr in ("0.05", "0.01")
    }
    for variant in ("VGG-A", "VGG-A with BatchNorm"):
        first = [float(r["loss"]) for r in rows if r["variant"] == variant and r["step"] == "1"]
        # Same initial weights, same first batch: the learning rate acts only from the second step on.
        assert first[0] == pytest.approx(first[1])
    results = json.loads((output / "loss_landscape.json").read_text())
    assert len(results["runs"]) == 4 and set(results["mean_band_width"]) == {"VGG-A", "VGG-A with BatchNorm"}
    for variant in ("VGG-A", "VGG-A with BatchNorm"):  # the headline number, from the CSV's losses
        widths = []
        for step in ("1", "2", "3"):
            losses = [float(r["loss"]) for r in rows if r["variant"] == variant and r["step"] == step]
            widths.append(max(losses) - min(losses))
        assert results["mean_band_width"][variant] == pytest.approx(
            np.mean(widths), abs=2e-6
        )  # CSV: 6 places
    assert yaml.safe_load((output / "config.yaml").read_text())["steps"] == 3
    assert_png(output / "loss_landscape.png")
    assert "analysis/loss_landscape" in image_tags(output)


def test_loss_landscape_rejects_images_too_small_for_the_network(tmp_path, capsys):
    config = yaml.safe_load((ROOT / "configs/analysis/loss_landscape.yaml").read_text())
    config["data"] = {"class_path": "litvision.data.DigitsDataModule", "init_args": {}}
    path = tmp_path / "landscape.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit):
        analyze("loss-landscape", "--config", path, "--output", tmp_path / "out")
    assert "needs images of at least 32 pixels a side; the data's are 8x8" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["tsne", "{missing}"], "is not a run directory: it has no config.yaml"),
        (
            ["confusion", "{run}", "--data.root=/x"],
            "--data.root is not an argument of SyntheticDataModule",
        ),
        (["confusion", "{run}", "--checkpoint", "nope.ckpt"], "checkpoint 'nope.ckpt' not found"),
    ],
)
def test_bad_input_is_one_line(run_dir, tmp_path, capsys, args, message):
    argv = [a.format(run=run_dir, missing=tmp_path / "missing") for a in args]
    with pytest.raises(SystemExit) as exit_:
        analyze(*argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 1 and len(err.splitlines()) == 1 and message in err


# The smallest member of torchvision families beyond the zoo's ResNet-50 and DenseNet-121, whose stages
# no table names: they are found from a forward pass.
TORCHVISION_FAMILIES = [
    "mobilenet_v3_small",
    "shufflenet_v2_x0_5",
    "efficientnet_b0",
    "convnext_tiny",  # channels-last tensors inside its blocks
]
NETWORKS = [
    *(pytest.param(a, {}, id=a.__name__) for a in ARCHITECTURES),
    *(pytest.param(TorchvisionNet, {"name": n}, id=n) for n in TORCHVISION_FAMILIES),
]


@pytest.mark.parametrize("architecture, options", NETWORKS)
def test_stages_of_every_network_are_drawn(architecture, options):
    """Every zoo network and any torchvision model has stages: feature maps among them shrink from one
    to the next, the last stage of a CNN outputs its pooled features, and the feature-map figure draws
    each."""
    shape = (1, 8, 8) if architecture.__name__ == "RowRNN" else (3, 32, 32)
    net = architecture(10, shape, **options).eval()
    x = torch.rand(2, *shape)
    shapes = output_shapes(net, x[:1])
    layers = net.stage_names
    assert layers and all(n in shapes and kind_of(shapes[n]) != "unsupported" for n in layers)
    sides = [shapes[n][1] for n in layers if kind_of(shapes[n]) == "maps"]
    assert sides[1:] == sorted(set(sides[1:]), reverse=True)  # after the stem, one layer per resolution
    if len(sides) > 1:
        assert int(np.prod(shapes[layers[-1]])) == net.num_features
    activations, _ = capture(net, x, layers)
    figure, shown = image_figure(x[0], [(n, activations[n][0]) for n in layers], 4, "test image")
    assert set(shown) == {n for n in layers if kind_of(shapes[n]) == "maps"}
    assert len(figure.axes) > len(layers)
    plt.close(figure)


def test_stages_of_torchvision_models_are_found_without_a_table():
    resnet = TorchvisionNet(10, (3, 64, 64), name="resnet18")
    assert resnet.stage_names == ["body.relu", *(f"body.layer{i}" for i in range(1, 5)), "body"]
    densenet = DenseNet(10, (3, 64, 64), factorized=True, noise_std=0.01)
    blocks = [f"body.features.denseblock{i}" for i in range(1, 4)]
    assert densenet.stage_names == ["body.features.relu0", *blocks, "body.features", "body"]
    assert densenet.training  # found in eval mode, the mode given back


def test_stages_of_the_cifar_resnet_and_vgg():
    resnet = CifarResNet(10, layers=(1, 1, 1, 1), width=8)
    assert resnet.stage_names == ["stem", "stages.0", "stages.1", "stages.2", "stages.3", "pool"]
    vgg = VGG(10, depth=11, batch_norm=True)
    assert vgg.stage_names == [
        "features.2",
        "features.6",
        "features.13",
        "features.20",
        "features.27",
        "pool",
    ]


def test_every_tool_runs_on_a_torchvision_model_with_its_defaults(tmp_path, monkeypatch):
    """A torchvision model no table knows (ShuffleNet) through every analysis tool that reads the network
    (curves and compare read the logs only), with the tools' default layers and features."""
    monkeypatch.chdir(tmp_path)
    main([
        "fit", f"--config={ROOT / 'configs/resnet50_eurosat.yaml'}",
        "--model.backbone.init_args.name=shufflenet_v2_x0_5", "--model.backbone.init_args.pretrained=false",
        "--data=litvision.data.SyntheticDataModule", "--data.num_classes=4", "--data.input_shape=[3,32,32]",
        "--data.train_size=32", "--data.val_size=8", "--data.test_size=8", "--data.batch_size=16",
        "--data.num_workers=0", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ])  # fmt: skip
    run = tmp_path / "lightning_logs/resnet50_eurosat/version_0"
    analyze("tsne", run, "--samples", 8, "--perplexity", 2)
    analyze("feature-maps", run, "--channels", 4)
    analyze("confusion", run)
    analyze("svm-head", run, "--crt_epochs", 1)
    analyze("rebalance", run, "--epochs", 1)
    folder = run / "analysis"
    for name in ("tsne", "feature_maps_0", "confusion", "svm_head"):
        assert_png(folder / f"{name}.png")
    layers = [layer["name"] for layer in json.loads((folder / "feature_maps.json").read_text())["layers"]]
    assert layers == ["body.conv1", "body.maxpool", "body.stage2", "body.stage3", "body"]
    assert set(json.loads((folder / "rebalance.json").read_text())["methods"]) == {
        "backbone", "posthoc", "tau_norm", "lws", "crt"
    }  # fmt: skip

    config = yaml.safe_load((ROOT / "configs/analysis/loss_landscape.yaml").read_text())
    data = {"num_classes": 4, "input_shape": [3, 32, 32], "train_size": 8, "val_size": 0, "batch_size": 4}
    config["data"] = {"class_path": "litvision.data.SyntheticDataModule", "init_args": data}
    backbone = {"class_path": "litvision.models.TorchvisionNet", "init_args": {"name": "shufflenet_v2_x0_5"}}
    config["variants"] = [{"name": "ShuffleNet", "backbone": backbone}]
    (tmp_path / "landscape.yaml").write_text(yaml.safe_dump(config))
    analyze("loss-landscape", "--config", tmp_path / "landscape.yaml", "--steps", 2,
            "--learning_rates", 0.1, 0.01, "--device", "cpu", "--output", tmp_path / "landscape")  # fmt: skip
    assert len(read_csv(tmp_path / "landscape/loss_landscape.csv")) == 2 * 2


def test_data_dir_points_a_tool_at_data_that_moved(tmp_path, monkeypatch, capsys):
    """A run trained on an image folder that has since moved: ``--data_dir`` points the tool at its new
    place and gives the same test predictions; without it, one line says the data is not found."""
    from test_data import write_images

    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "images/train", {"a": 12, "b": 12}, (16, 16))
    write_images(tmp_path / "images/test", {"a": 4, "b": 4}, (16, 16))
    main([
        "fit", f"--config={ROOT / 'configs/cnn_cifar.yaml'}", "--model.backbone.init_args.channels=[4]",
        "--model.backbone.init_args.hidden=[8]", "--data=litvision.data.ImageFolderDataModule",
        "--data.data_dir=images", "--data.val_size=4", "--data.batch_size=8", "--data.num_workers=0",
        "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
    ])  # fmt: skip
    run = tmp_path / "lightning_logs/cnn_cifar/version_0"
    (tmp_path / "images").rename(tmp_path / "moved")
    with pytest.raises(SystemExit) as exit_:
        analyze("confusion", run, "--output", tmp_path / "nowhere")
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip()
    assert "images" in err and len(err.splitlines()) == 1 and not (tmp_path / "nowhere").exists()
    analyze("confusion", run, "--data_dir", tmp_path / "moved", "--output", tmp_path / "moved_out")
    counts = [[int(v) for v in list(r.values())[1:]] for r in read_csv(tmp_path / "moved_out/confusion.csv")]
    assert counts == json.loads((run / "test_results.json").read_text())["confusion_matrix"]
