"""albumentations policies given in YAML: the same image as albumentations itself, seeded per sample,
and never dropped silently by the in-memory path."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch
from test_data import write_images

from litvision.data import ImageFolderDataModule
from litvision.data.policy import AlbumentationsPolicy
from litvision.errors import LitvisionError

# Report 001's tricks: geometric only (flips, 90-degree rotations, shift-scale-rotate), no colour.
POLICY = [
    {"class_path": "albumentations.HorizontalFlip", "init_args": {"p": 0.5}},
    {"class_path": "albumentations.VerticalFlip", "init_args": {"p": 0.5}},
    {"class_path": "albumentations.RandomRotate90"},
    {
        "class_path": "Affine",
        "init_args": {"translate_percent": 0.1, "scale": [0.9, 1.1], "rotate": [-20, 20]},
    },
]


def direct() -> list[A.BasicTransform]:
    """The same policy written in Python."""
    return [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(),
        A.Affine(translate_percent=0.1, scale=(0.9, 1.1), rotate=(-20, 20)),
    ]


def test_policy_gives_what_albumentations_gives_with_the_same_seed():
    image = torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8)
    policy = AlbumentationsPolicy(POLICY)
    outputs = []
    for seed in range(8):
        ours = policy.apply(image, seed)
        theirs = A.Compose(direct(), seed=seed)(image=image.permute(1, 2, 0).numpy())["image"]
        assert np.array_equal(ours.permute(1, 2, 0).numpy(), theirs), seed
        outputs.append(ours)
    assert len({o.numpy().tobytes() for o in outputs}) > 4, "seeds draw different transforms"


def folder_data(tmp_path, **kwargs) -> ImageFolderDataModule:
    write_images(tmp_path, {"a": 6, "b": 6}, (16, 16))
    return ImageFolderDataModule(tmp_path, val_size=0, test_size=2, num_workers=0, policy=POLICY, **kwargs)


def test_training_images_are_seeded_per_sample(tmp_path):
    data = folder_data(tmp_path, in_memory=False)
    data.setup("fit")
    first, again, other = (data.train_set[(3, seed)][0] for seed in (11, 11, 12))
    assert torch.equal(first, again), "a sample's seed fixes its augmentation"
    assert not torch.equal(first, other)
    plain = data.train_set[3][0]  # evaluation items carry no seed: drawn from torch's generator
    assert plain.shape == first.shape == (3, 16, 16)


def test_in_memory_auto_reads_files_and_says_so_once(tmp_path, caplog):
    data = folder_data(tmp_path)  # in_memory: auto
    with caplog.at_level("INFO"):
        data.setup("fit")
        data.setup("test")
    said = [r.getMessage() for r in caplog.records if "read from the image files" in r.getMessage()]
    assert len(said) == 1 and "AlbumentationsPolicy" in said[0]
    assert not hasattr(data.train_set, "__getitems__"), "the file path, which runs the policy"


def test_in_memory_true_refuses_a_policy(tmp_path):
    data = folder_data(tmp_path, in_memory=True)
    with pytest.raises(LitvisionError, match="AlbumentationsPolicy cannot run per batch.*in_memory: false"):
        data.check_options()


def test_a_policy_without_augment_is_refused(tmp_path):
    with pytest.raises(LitvisionError, match="a policy is given but augment is false"):
        folder_data(tmp_path, augment=False)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"class_path": "albumentations.NoSuchFlip"}, "'albumentations.NoSuchFlip' is not an albumentations"),
        ({"class_path": "torch.nn.ReLU"}, "'torch.nn.ReLU' is not an albumentations transform"),
        ({"class_path": "HorizontalFlip", "init_args": {"p": 7}}, "'HorizontalFlip' refuses its init_args"),
        ({"class": "HorizontalFlip"}, "write each transform as"),
    ],
)
def test_bad_policy_entries_are_one_line(entry, message):
    with pytest.raises(LitvisionError, match=message) as err:
        AlbumentationsPolicy([entry])
    assert "\n" not in str(err.value)
