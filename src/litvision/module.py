"""``ImageClassifier``: the one LightningModule, wrapping any architecture."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torch.optim.lr_scheduler import CyclicLR, OneCycleLR, ReduceLROnPlateau
from torchmetrics import MaxMetric, MeanMetric

from litvision.data.device_augment import MixedBatch
from litvision.errors import LitvisionError
from litvision.metrics import ClassificationCounts
from litvision.models.base import ClassifierNet
from litvision.objectives import ClassCountLoss, CrossEntropy, IRMMixin, LabelSmoothingMixin

# An architecture of litvision.models (or any callable making a ClassifierNet) that builds the network
# for a dataset: ``backbone(num_classes, input_shape)``. In YAML it is a class_path plus the
# architecture's own options; the two dataset-given arguments are linked from the datamodule. Typed by
# the zoo's contract, so that `fit --help` lists the zoo's architectures.
NetFactory = Callable[[int, tuple[int, int, int]], ClassifierNet]
# A loss class of litvision.objectives (or any callable) built as ``loss(num_classes)``; in YAML a
# class_path plus its own options (``model.loss``).
LossFactory = Callable[[int], ClassCountLoss]

SPLITS = ("train", "val", "test")
# torch.compile's modes. "reduce-overhead" replays the training step's kernels as CUDA graphs: one launch
# where eager PyTorch makes hundreds from Python, which bound small-batch training on a fast GPU.
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
# Schedulers that change the learning rate every optimizer step rather than every epoch.
_PER_STEP_SCHEDULERS = (OneCycleLR, CyclicLR)


class ImageClassifierBase(LightningModule):
    """Trains any architecture to classify images, with per-class metrics in TensorBoard.

    Metrics are torchmetrics objects, updated every step and computed (and synchronised across
    devices) once per epoch: ``{split}/loss``, ``{split}/acc``, ``{split}/acc_macro`` and one
    ``{split}/acc_class/<class name>`` per class, plus a confusion-matrix figure at the end of
    validation and test. ``val/acc_best`` (a metric of the HPARAMS tab) is the best validation accuracy
    so far.

    Args:
        backbone: builds the network as ``backbone(num_classes, input_shape)``.
        num_classes: number of classes (linked from the datamodule by the CLI).
        input_shape: (channels, height, width) of the images (linked from the datamodule).
        class_names: names used in metric keys and figures (linked from the datamodule).
        loss: builds the loss as ``loss(num_classes)`` (``class_path`` in YAML; see
            objectives/losses.py); the training split's class counts reach it from the datamodule.
        optimizer: builds the optimizer from the parameters (``class_path`` in YAML).
        lr_scheduler: builds the learning-rate scheduler from the optimizer, or None. OneCycleLR and
            CyclicLR step every batch, the others every epoch; OneCycleLR without ``total_steps`` runs
            over the whole fit; ReduceLROnPlateau watches ``val/loss``.
        log_confusion_matrix: add the confusion-matrix figure and the figure of each class's accuracy
            over the epochs to TensorBoard each epoch (the test's confusion matrix is added anyway).
        label_smoothing: epsilon of label smoothing (:class:`LabelSmoothingMixin`); 0 turns it off.
        irm_weight: weight of the IRM penalty (:class:`IRMMixin`); 0 turns IRM off.
        irm_anneal_steps: optimizer steps with the IRM penalty weighted 1.0 before ``irm_weight``.
        channels_last: keep the network's weights and inputs in channels-last memory format, which
            tensor cores run faster; ``"auto"``: for convolutional networks trained on a CUDA GPU.
        compile: compile the network's training forward and backward with ``torch.compile``, in this
            mode (``true``: ``default``), with static shapes (the last, smaller batch of an epoch gets
            its own graph); evaluation stays eager. ``"auto"``: ``reduce-overhead`` (CUDA graphs) for a
            convolutional network on one CUDA GPU without gradient accumulation, eager elsewhere (see
            :func:`compile_mode`). The first steps are slower (compilation), later ones faster;
            checkpoints are the eager network's.
    """

    def __init__(
        self,
        backbone: NetFactory,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (3, 32, 32),
        class_names: Sequence[str] | None = None,
        loss: LossFactory = CrossEntropy,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        log_confusion_matrix: bool = True,
        label_smoothing: float = 0.0,
        irm_weight: float = 0.0,
        irm_anneal_steps: int = 0,
        channels_last: bool | Literal["auto"] = "auto",
        compile: bool | Literal["auto"] | CompileMode = "auto",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if channels_last not in (True, False, "auto"):
            raise LitvisionError(f"channels_last={channels_last!r} is invalid: use true, false or auto")
        self.channels_last = channels_last
        if compile not in (True, False, "auto", *get_args(CompileMode)):
            modes = list(get_args(CompileMode))
            raise LitvisionError(f"compile={compile!r} is invalid: use true, false, auto or one of {modes}")
        self.compile_option = compile
        self.uses_channels_last = False  # decided in setup(), once the device is known
        self.compiled_mode: str | None = None  # decided in setup(): the mode of the compiled forward
        # In a tuple, not an attribute of its own: a module attribute would add the compiled copy's
        # ``_orig_mod.`` keys to the state dict.
        self._compiled_net: tuple[nn.Module, ...] = ()
        self._throughput_options_applied = False
        if not 0 <= label_smoothing < 1:
            raise LitvisionError(f"label_smoothing={label_smoothing} is invalid: it must be in [0, 1)")
        if irm_weight < 0 or irm_anneal_steps < 0:
            raise LitvisionError(
                f"irm_weight={irm_weight} and irm_anneal_steps={irm_anneal_steps} must both be >= 0"
            )
        self.label_smoothing = label_smoothing
        self.irm_weight = irm_weight
        self.irm_anneal_steps = irm_anneal_steps
        self.class_names = (
            list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        )
        if len(self.class_names) != num_classes:
            raise LitvisionError(
                f"class_names has {len(self.class_names)} names but num_classes={num_classes}"
            )
        self.num_classes = num_classes
        self.net = backbone(num_classes, tuple(input_shape))
        self.example_input_array = torch.zeros(1, *input_shape)  # the model summary's (in eval mode: eager)
        self.loss = loss(num_classes)
        if label_smoothing and not getattr(self.loss, "smoothable", True):
            raise LitvisionError(
                f"label_smoothing={label_smoothing} has no meaning with {type(self.loss).__name__}: "
                "set one of them only"
            )
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.log_confusion_matrix = log_confusion_matrix
        for split in SPLITS:
            setattr(self, f"{split}_metrics", ClassificationCounts(num_classes, confusion=split != "train"))
            # No NaN check: it reads the loss back from the device every step; a NaN loss shows as NaN.
            setattr(self, f"{split}_loss", MeanMetric(nan_strategy="disable"))
        # The training epoch's running metrics go into checkpoints, so that an epoch resumed mid-way
        # reports over all of its batches.
        self.train_metrics.persistent(True)
        self.train_loss.persistent(True)
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run remembers its best
        # The last confusion matrix computed per split, for reports read after the loop ends.
        self.confusion: dict[str, Tensor] = {}
        self._loaded_epoch: int | None = None  # the epoch of the checkpoint last loaded (from 0)
        # Per-class accuracy of each epoch, per split: the figure of the classes over the epochs.
        self.class_history: dict[str, list[tuple[int, list[float]]]] = {"train": [], "val": []}

    def setup(self, stage: str) -> None:
        """Hand the training split's class counts to the loss; apply the throughput options
        (channels-last, compilation) for the device that runs."""
        counts = getattr(self.trainer.datamodule, "train_class_counts", None)
        if counts is not None and hasattr(self.loss, "set_class_counts"):
            self.loss.set_class_counts(counts)
        if self._throughput_options_applied:  # fit, then test with the same trainer
            return
        self._throughput_options_applied = True
        convolutional = any(isinstance(m, nn.Conv2d) for m in self.net.modules())
        on_gpu = self.trainer.strategy.root_device.type == "cuda"
        if self.channels_last is True or (self.channels_last == "auto" and convolutional and on_gpu):
            self.net.to(memory_format=torch.channels_last)
            self.uses_channels_last = True
        mode = compile_mode(
            self.compile_option, self.trainer.strategy.root_device, self.trainer.world_size,
            self.trainer.accumulate_grad_batches, self.net,
        )  # fmt: skip
        if mode is not None and stage == "fit":  # evaluation runs eager
            self.compiled_mode = mode
            self._compiled_net = (torch.compile(self.net, mode=mode, dynamic=False),)

    def forward(self, x: Tensor) -> Tensor:
        if self.uses_channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self._compiled_net and self.training:
            return self._compiled_net[0](x)
        return self.net(x)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.compiled_mode in _CUDA_GRAPH_MODES:
            # Each step its own generation of CUDA graph outputs: the previous step's may be overwritten.
            torch.compiler.cudagraph_mark_step_begin()

    def risk(self, logits: Tensor, target: Tensor) -> Tensor:
        """The per-batch risk (the loss); :class:`LabelSmoothingMixin` overrides it."""
        return self.loss(logits, target)

    def compute_loss(self, logits: Tensor, target: Tensor, env: Tensor | None = None) -> Tensor:
        """The objective: the risk, plus what the mixins add (:class:`IRMMixin`). ``env`` holds the
        samples' environment ids when the batch carries them (its third element)."""
        return self.risk(logits, target)

    def _step(self, batch: Sequence[Tensor], split: str) -> Tensor:
        x, target = batch[0], batch[1]
        env = batch[2] if len(batch) > 2 else None
        self.loss.epoch = self.current_epoch  # for losses that change with it (deferred re-weighting)
        logits = self(x)
        if isinstance(batch, MixedBatch):  # mixup/cutmix: the loss of each label, by its share
            loss = batch.lam * self.compute_loss(logits, target, env)
            loss = loss + (1 - batch.lam) * self.compute_loss(logits, batch.partner, env)
            target = target if batch.lam >= 0.5 else batch.partner  # metrics: the larger share's label
        else:
            loss = self.compute_loss(logits, target, env)
        getattr(self, f"{split}_metrics").update(logits.detach(), target)
        # The epoch's loss is the mean over images: the batch's loss once per image (a view, no copy).
        # Not ``weight=``: with nan_strategy="disable" (no NaN check, so no step waits for the device)
        # torchmetrics' MeanMetric replaces any weight by ones.
        getattr(self, f"{split}_loss").update(loss.detach().expand(target.shape[0]))
        return loss

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        # Lightning hands the tensor to the logger every log_every_n_steps only; on the progress bar it
        # would be read back to the host every step, making the CPU wait for the GPU.
        self.log("train/loss_step", loss)
        return loss

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    @property
    def trained_epoch(self) -> int:
        """The epoch the weights come from, counted from 1 as litvision shows every epoch (0: untrained):
        in a fit, the one running; else the checkpoint's when one was loaded (the best one, tested after
        a fit), or the epochs trained."""
        if self.trainer.state.fn == "fit":
            return self.current_epoch + 1
        if self._loaded_epoch is not None:
            return self._loaded_epoch + 1
        return self.current_epoch

    def on_fit_end(self) -> None:
        self._loaded_epoch = None  # a resumed fit's checkpoint: not what a test after it evaluates

    def on_test_end(self) -> None:
        self._loaded_epoch = None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to resume with class counts other than those the loss trained with (a changed
        imbalance or split): the checkpoint's counts would silently replace the datamodule's."""
        self._loaded_epoch = checkpoint.get("epoch")
        if "class_history" in checkpoint:
            self.class_history = {
                k: [(e, list(v)) for e, v in points] for k, points in checkpoint["class_history"].items()
            }
        saved = checkpoint.get("state_dict", {}).get("loss.class_counts")
        current = getattr(self.loss, "class_counts", None)
        counted = saved is not None and current is not None and bool((current > 0).all())
        if counted and not torch.equal(saved.cpu(), current.cpu()):
            raise LitvisionError(
                f"the checkpoint's loss trained with class counts {saved.tolist()}, but the data now "
                f"gives {current.tolist()}: resume with the run's own data options"
            )

    def check_datamodule(self, datamodule: Any) -> None:
        """Reject a model and data combination that has no meaning (the CLI calls it before writing)."""
        if self.irm_weight and getattr(datamodule, "mixes", False):
            raise LitvisionError(
                "irm_weight cannot combine with mixup or cutmix: IRM's environments are per sample, "
                "a mixed image belongs to two; turn one of them off"
            )

    def check_trainer(self, trainer: Any) -> None:
        """Reject a compile mode the trainer's options cannot replay (the CLI calls it before writing)."""
        compile_mode(
            self.compile_option, trainer.strategy.root_device, trainer.world_size,
            trainer.accumulate_grad_batches, self.net,
        )  # fmt: skip

    def predict_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        """Class probabilities of each image."""
        return self(batch[0]).softmax(dim=1)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")
        # After the epoch's validation (Lightning validates before this hook): both splits are current.
        if self.log_confusion_matrix:
            self._add_class_accuracy_figure()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # a check of the loop, not a measurement
            self._reset("val")
            return
        acc = self._log_epoch("val")
        self.val_acc_best.update(acc)
        self.log("val/acc_best", self.val_acc_best.compute())

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def _reset(self, split: str) -> None:
        getattr(self, f"{split}_metrics").reset()
        getattr(self, f"{split}_loss").reset()

    def _log_epoch(self, split: str) -> Tensor:
        values = getattr(self, f"{split}_metrics").compute()
        loss = getattr(self, f"{split}_loss").compute()
        self._reset(split)
        self.log_dict(
            {f"{split}/loss": loss, f"{split}/acc": values["acc"], f"{split}/acc_macro": values["acc_macro"]},
            prog_bar=split != "test",  # once per epoch, so no step waits for it
        )
        # torchmetrics squeezes a one-element result to 0-d: one class gives a scalar and a 1x1 matrix.
        per_class = values["acc_class"].reshape(-1)
        self.log_dict({f"{split}/acc_class/{n}": a for n, a in zip(self.class_names, per_class)})
        if split != "test" and self.trainer.state.fn == "fit":
            self.class_history[split].append((self.trained_epoch, per_class.tolist()))
        if "confmat" in values:
            self.confusion[split] = values["confmat"].reshape(self.num_classes, self.num_classes).cpu()
            if self.log_confusion_matrix or split == "test":
                self._add_confusion_figure(split)
        return values["acc"]

    def _add_class_accuracy_figure(self) -> None:
        if not self.trainer.is_global_zero:
            return
        loggers = [lg for lg in self.loggers if hasattr(lg.experiment, "add_figure")]
        if not loggers:
            return
        from litvision.plotting import class_accuracy_figure, plt

        title = "accuracy per class: validation (solid), training (dashed)"
        counts = getattr(self.trainer.datamodule, "train_class_counts", None)
        figure = class_accuracy_figure(self.class_history, self.class_names, counts, title)
        for logger in loggers:
            logger.experiment.add_figure("accuracy_per_class", figure, self.trained_epoch, close=False)
        plt.close(figure)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["class_history"] = self.class_history  # the figure of a resumed run starts at epoch 1

    def _add_confusion_figure(self, split: str) -> None:
        if not self.trainer.is_global_zero:
            return
        loggers = [lg for lg in self.loggers if hasattr(lg.experiment, "add_figure")]
        if not loggers:
            return
        from litvision.plotting import confusion_matrix_figure, plt

        epoch = self.trained_epoch
        title = f"{split} confusion matrix, epoch {epoch}"
        figure = confusion_matrix_figure(self.confusion[split].numpy(), self.class_names, title)
        for logger in loggers:
            logger.experiment.add_figure(f"{split}/confusion_matrix", figure, epoch, close=False)
        plt.close(figure)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        if _spans_the_fit(self.scheduler_factory):
            scheduler = self.scheduler_factory(
                optimizer, total_steps=int(self.trainer.estimated_stepping_batches)
            )
        else:
            scheduler = self.scheduler_factory(optimizer)
        config: dict[str, Any] = {
            "scheduler": scheduler,
            "interval": "step" if isinstance(scheduler, _PER_STEP_SCHEDULERS) else "epoch",
        }
        if isinstance(scheduler, ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}


def compile_mode(
    option: bool | str, device: torch.device, world_size: int, accumulate_grad_batches: int, net: nn.Module
) -> str | None:
    """The ``torch.compile`` mode a run trains with (None: eager), for the ``compile`` option.

    ``auto`` captures the step in CUDA graphs where the replay is safe: on one CUDA GPU (a DDP process's
    gradient hooks stay eager), for a convolutional network (recurrent ones are left eager), and without
    gradient accumulation (a replay overwrites the previous step's gradients, which accumulation would
    read). Not on the CPU: there are no CUDA graphs, and compiling takes tens of seconds to minutes."""
    if option in _CUDA_GRAPH_MODES and accumulate_grad_batches > 1:
        raise LitvisionError(
            f"compile={option!r} (CUDA graphs) cannot combine with accumulate_grad_batches="
            f"{accumulate_grad_batches}: a replay overwrites the gradients being accumulated; use "
            "compile=default or no accumulation"
        )
    if option != "auto":
        return "default" if option is True else option or None
    convolutional = any(isinstance(m, nn.Conv2d) for m in net.modules())
    recurrent = any(isinstance(m, nn.RNNBase) for m in net.modules())
    safe = world_size == 1 and accumulate_grad_batches == 1 and convolutional and not recurrent
    return "reduce-overhead" if device.type == "cuda" and safe else None


def _spans_the_fit(factory: Any) -> bool:
    """Whether ``factory`` builds a scheduler that takes ``total_steps`` (OneCycleLR) but was given
    neither it nor ``epochs``: it then runs one cycle over the whole fit. The factory is a
    ``functools.partial`` when it comes from the CLI (jsonargparse fills in every default) or from code;
    anything else is called as it is."""
    if not isinstance(factory, functools.partial):
        return False
    target = next((t for t in (factory.func, *factory.args) if isinstance(t, type)), None)
    if target is None or "total_steps" not in inspect.signature(target).parameters:
        return False
    return factory.keywords.get("total_steps") is None and factory.keywords.get("epochs") is None


class ImageClassifier(IRMMixin, LabelSmoothingMixin, ImageClassifierBase):
    """The LightningModule of every litvision run: :class:`ImageClassifierBase` with the objective
    mixins, label smoothing and IRM, both off by default (see ``label_smoothing``, ``irm_weight``)."""
