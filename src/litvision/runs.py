"""A finished run read back from its directory: the model with trained weights and its datamodule.

A run directory is what ``litvision fit`` writes: ``config.yaml`` (the resolved config),
``checkpoints/*.ckpt``, ``test_results.json`` and TensorBoard event files. Checkpoints are read with
``torch.load(weights_only=True)``: tensors and plain containers only, so a checkpoint from an untrusted
source cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litvision.errors import LitvisionError
from litvision.utils import find_checkpoint, load_checkpoint


@dataclass
class Run:
    """A trained model, the datamodule it was trained on, and where they came from."""

    directory: Path
    checkpoint: Path
    config: dict[str, Any]
    model: Any  # ImageClassifier, in eval mode
    datamodule: Any  # ImageDataModule, not yet set up

    @property
    def test_results(self) -> dict[str, Any] | None:
        path = self.directory / "test_results.json"
        return json.loads(path.read_text()) if path.is_file() else None


def load_run(run_dir: str | Path, checkpoint: str = "best", data_args: dict[str, Any] | None = None) -> Run:
    """Rebuild a run's model and datamodule from its ``config.yaml`` and load a checkpoint's weights.

    ``data_args`` replace some of the datamodule's arguments, e.g. ``{"data_dir": "/data/cifar"}``
    for a run trained on another machine.
    """
    import yaml

    from litvision.cli import LitvisionCLI  # runs.py sits above the CLI, which never imports it

    run_dir = Path(run_dir)
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise LitvisionError(f"'{run_dir}' is not a run directory: it has no config.yaml")
    ckpt_path = find_checkpoint(run_dir, checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    config = yaml.safe_load(config_file.read_text())
    for key in ("ckpt_path", "weights_only"):  # arguments of ``fit``, not of the classes rebuilt here
        config.pop(key, None)
    # Only the model and datamodule are wanted: a trainer that writes nothing and touches no GPU.
    config["trainer"] = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
        "devices": 1,
    }
    config.pop("checkpoint", None)
    if data_args:
        config["data"].setdefault("init_args", {}).update(data_args)
    cli = LitvisionCLI(args=config, run=False, save_config_callback=None)
    model = cli.model
    missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
    wrong = [k for k in missing if k.startswith("net.")] + [k for k in unexpected if k.startswith("net.")]
    if wrong:
        raise LitvisionError(
            f"checkpoint '{ckpt_path}' does not fit the model of '{config_file}': "
            f"{len(wrong)} mismatched weights, e.g. {wrong[0]}"
        )
    model.eval()
    return Run(run_dir, ckpt_path, config, model, cli.datamodule)
