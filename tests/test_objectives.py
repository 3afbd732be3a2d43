"""Label smoothing and IRM, the objective mixins of ImageClassifier."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer

from litvision.data import StepImbalance, SyntheticDataModule
from litvision.models import SimpleCNN
from litvision.module import ImageClassifier
from litvision.objectives import irm_penalty


def classifier(**kwargs) -> ImageClassifier:
    return ImageClassifier(SimpleCNN, num_classes=5, input_shape=(1, 8, 8), **kwargs)


def test_label_smoothing_is_torch_cross_entropy_with_smoothing():
    logits, target = torch.randn(32, 5), torch.randint(0, 5, (32,))
    model = classifier(label_smoothing=0.1)
    assert torch.allclose(
        model.compute_loss(logits, target), F.cross_entropy(logits, target, label_smoothing=0.1)
    )
    assert torch.allclose(classifier().compute_loss(logits, target), F.cross_entropy(logits, target))


def scale_gradient(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d/dw of mean cross-entropy(w * logits) at w = 1 in closed form: mean of (softmax - onehot) . logits."""
    residual = logits.softmax(1) - F.one_hot(target, logits.shape[1]).float()
    return (residual * logits).sum(1).mean()


def test_irm_penalty_equals_the_closed_form_product_of_half_batch_gradients():
    torch.manual_seed(0)
    logits, target = torch.randn(33, 5), torch.randint(0, 5, (33,))
    expected = scale_gradient(logits[0::2], target[0::2]) * scale_gradient(logits[1::2], target[1::2])
    assert torch.allclose(irm_penalty(logits, target, F.cross_entropy), expected, atol=1e-6)


def test_irm_penalty_is_non_negative_in_expectation():
    # Independent halves: E[g1 g2] = E[g]^2 >= 0, though a single estimate may be negative.
    torch.manual_seed(0)
    bias = torch.tensor([2.0, 0, 0, 0, 0])
    penalties, gradients = [], []
    for _ in range(2000):
        logits, target = torch.randn(16, 5) + bias, torch.randint(0, 5, (16,))
        penalties.append(irm_penalty(logits, target, F.cross_entropy))
        gradients.append(scale_gradient(logits, target))
    penalties = torch.stack(penalties)
    assert (penalties < 0).any(), "a single estimate can be negative"
    expected = torch.stack(gradients).mean() ** 2
    assert penalties.mean() > 0 and abs(penalties.mean() - expected) < 0.2 * expected


def test_irm_adds_its_weighted_penalty_per_environment_in_training_only():
    torch.manual_seed(0)
    logits = torch.randn(40, 5, requires_grad=True)
    target, env = torch.randint(0, 5, (40,)), torch.arange(40) % 2
    model = classifier(irm_weight=0.5)
    model.log = lambda *args, **kwargs: None  # no trainer to log to in this unit test
    penalty = (irm_penalty(logits[env == 0], target[env == 0], F.cross_entropy)
               + irm_penalty(logits[env == 1], target[env == 1], F.cross_entropy)) / 2  # fmt: skip
    risk = F.cross_entropy(logits, target)
    assert torch.allclose(model.compute_loss(logits, target, env), risk + 0.5 * penalty)
    assert torch.allclose(classifier(irm_weight=0).compute_loss(logits, target, env), risk)
    model.eval()
    assert torch.allclose(model.compute_loss(logits, target, env), risk), "validation loss is the risk"


class AdamSteps(Callback):
    def on_train_end(self, trainer, pl_module) -> None:
        self.steps = trainer.optimizers[0].state[next(pl_module.parameters())]["step"].item()


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_irm_resets_the_optimizer_when_the_full_weight_switches_on(tmp_path, label_smoothing):
    data = SyntheticDataModule(
        num_classes=5, input_shape=(1, 8, 8), train_size=200, val_size=0, batch_size=20,
        imbalance=StepImbalance(classes=[0, 1], fraction=0.5), noise_variances=[0.1, 0.2],
    )  # fmt: skip
    model = classifier(irm_weight=100, irm_anneal_steps=7, label_smoothing=label_smoothing)
    steps = AdamSteps()
    trainer = Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, callbacks=[steps])  # fmt: skip
    trainer.fit(model, datamodule=data)
    assert trainer.global_step > 7
    assert steps.steps == trainer.global_step - 7, "Adam's state restarted at the anneal step"
    assert torch.isfinite(trainer.callback_metrics["train/irm_penalty"])


def test_irm_weight_above_one_divides_the_whole_loss_and_anneals_at_weight_one():
    torch.manual_seed(0)
    logits = torch.randn(40, 5, requires_grad=True)
    target, env = torch.randint(0, 5, (40,)), torch.arange(40) % 2
    penalty = (irm_penalty(logits[env == 0], target[env == 0], F.cross_entropy)
               + irm_penalty(logits[env == 1], target[env == 1], F.cross_entropy)) / 2  # fmt: skip
    risk = F.cross_entropy(logits, target)
    strong = classifier(irm_weight=10.0)
    strong.log = lambda *args, **kwargs: None  # no trainer to log to in this unit test
    # Divided by the weight, to keep the gradient scale (DomainBed): not risk + 10 * penalty.
    assert torch.allclose(strong.compute_loss(logits, target, env), (risk + 10.0 * penalty) / 10.0)
    annealing = classifier(irm_weight=10.0, irm_anneal_steps=5)  # step 0 < 5: weight 1, no division
    annealing.log = lambda *args, **kwargs: None
    assert torch.allclose(annealing.compute_loss(logits, target, env), risk + penalty)
