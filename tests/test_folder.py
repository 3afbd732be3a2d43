"""ImageFolderDataModule on the folder layouts users have: root/<class>, root/train alone, and
root/train + root/test; what it skips and what it refuses."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from test_data import write_images

from litvision.data import ImageFolderDataModule
from litvision.errors import DataNotFoundError, LitvisionError

# Unusual class names, as users have them: spaces, accents, dots, digits first.
CLASSES = {"Sea Lake": 20, "forêt": 10, "v1.2": 5, "3 cats": 15}


def add_clutter(root: Path) -> None:
    """What real folders hold beside images: a hidden folder, hidden files, macOS's ._ copies, notes."""
    (root / ".ipynb_checkpoints").mkdir()
    write_images(root / ".ipynb_checkpoints", {"ghost": 2}, (12, 12))
    for folder in [root, *[p for p in root.iterdir() if p.is_dir()]]:
        (folder / ".DS_Store").write_bytes(b"\x00\x01")
        (folder / "notes.txt").write_text("not an image")
    first = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))[0]
    (first / "._copy.png").write_bytes(b"AppleDouble")  # hidden, and not an image


def split_counts(data: ImageFolderDataModule, split: str) -> Counter:
    dataset = data.train_set if split == "train" else data.test_set
    return Counter(data.class_names[dataset[i][1]] for i in range(len(dataset)))


def test_flat_layout_holds_out_a_seeded_stratified_test_split(tmp_path):
    write_images(tmp_path, CLASSES, (12, 12))
    add_clutter(tmp_path)
    data = ImageFolderDataModule(tmp_path, test_size=0.2, val_size=0, num_workers=0, in_memory=False)
    assert data.class_names == sorted(CLASSES) and data.input_shape == (3, 12, 12)
    data.setup("fit")
    data.setup("test")
    test = split_counts(data, "test")
    assert test == {name: n // 5 for name, n in CLASSES.items()}, "each class in proportion"
    assert split_counts(data, "train") + test == Counter(CLASSES), "every image once, clutter skipped"
    again = ImageFolderDataModule(tmp_path, test_size=0.2, val_size=0, num_workers=0, in_memory=False)
    other = ImageFolderDataModule(
        tmp_path, test_size=0.2, val_size=0, num_workers=0, in_memory=False, split_seed=1
    )
    for module in (again, other):
        module.setup("test")
    assert again.predict_files == data.predict_files, "the split is seeded"
    assert other.predict_files != data.predict_files, "split_seed changes it"
    assert all("/." not in path for path in data.predict_files)


def test_train_folder_alone_holds_out_its_test_split(tmp_path):
    write_images(tmp_path / "train", {"a": 10, "b": 10}, (8, 8))
    data = ImageFolderDataModule(tmp_path, test_size=4, val_size=0, num_workers=0)
    data.setup("fit")
    data.setup("test")
    assert len(data.train_set) == 16 and split_counts(data, "test") == {"a": 2, "b": 2}


def test_train_and_test_folders_with_nested_images(tmp_path):
    write_images(tmp_path / "train", {"a": 4, "b": 4}, (8, 8))
    write_images(tmp_path / "train" / "b" / "more", {"deeper": 2}, (8, 8))  # nested under class b
    write_images(tmp_path / "test", {"b": 3}, (8, 8))
    add_clutter(tmp_path / "train")
    data = ImageFolderDataModule(tmp_path, val_size=0, num_workers=0)
    data.setup("fit")
    data.setup("test")
    assert data.class_names == ["a", "b"]
    assert split_counts(data, "train") == {"a": 4, "b": 6} and split_counts(data, "test") == {"b": 3}


def test_empty_class_folder_is_named(tmp_path):
    write_images(tmp_path, {"full": 3}, (8, 8))
    (tmp_path / "Empty One").mkdir()
    (tmp_path / "Empty One" / "readme.txt").write_text("no images here")
    with pytest.raises(
        DataNotFoundError, match=r"class folder\(s\) \['Empty One'\] of '.*' hold no image files"
    ):
        ImageFolderDataModule(tmp_path)


def test_test_classes_that_are_not_training_classes_are_named(tmp_path):
    write_images(tmp_path / "train", {"cat": 2, "dog": 2}, (8, 8))
    write_images(tmp_path / "test", {"cat": 1, "emu": 1, "yak": 1}, (8, 8))
    with pytest.raises(LitvisionError, match=r"has classes \['emu', 'yak'\] that .* does not have"):
        ImageFolderDataModule(tmp_path)


def test_test_folder_without_train_folder_is_refused(tmp_path):
    write_images(tmp_path / "test", {"cat": 1}, (8, 8))
    with pytest.raises(DataNotFoundError, match="has a 'test' folder but no 'train' folder"):
        ImageFolderDataModule(tmp_path)


def test_skip_corrupt_leaves_out_unreadable_images_of_a_flat_folder(tmp_path):
    write_images(tmp_path, {"a": 6, "b": 6}, (8, 8))
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    data = ImageFolderDataModule(tmp_path, test_size=0.25, val_size=0, num_workers=0, skip_corrupt=True)
    with pytest.warns(UserWarning, match="left out 1 unreadable image"):
        data.setup("fit")
    data.setup("test")
    assert len(data.train_set) + len(data.test_set) == 12


@pytest.mark.parametrize("size, shape", [((64, 48), (3, 48, 64)), ((300, 200), (3, 224, 224))])
def test_small_images_keep_their_size_and_photos_are_resized_to_224(tmp_path, size, shape):
    write_images(tmp_path, {"a": 2, "b": 2}, size)
    assert ImageFolderDataModule(tmp_path).input_shape == shape
    assert ImageFolderDataModule(tmp_path, image_size=32).input_shape == (3, 32, 32)
