"""Cost of per-sample augmentation seeds (what makes resumes exact and runs independent of workers):
the CIFAR-10 training transform on 32x32 images with and without a seed per sample, in one process.

    python benchmarks/seeded_augmentation.py
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision.transforms import v2

from litvision.data.base import TensorImageDataset, TransformedSubset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8)
    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.RandomCrop(32, padding=4),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26)),
            v2.ToPureTensor(),
        ]
    )
    dataset = TransformedSubset(TensorImageDataset(images, [0] * args.images), range(args.images), transform)
    ratios = []
    for _ in range(args.repeats):  # interleaved, so that load on the machine hits both alike
        start = time.perf_counter()
        for i in range(args.images):
            dataset[i]
        plain = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(args.images):
            dataset[(i, 1_000_003 * i)]
        seeded = time.perf_counter() - start
        ratios.append(seeded / plain)
        per_image = 1e6 / args.images
        print(f"unseeded {plain * per_image:6.1f} us/image   seeded {seeded * per_image:6.1f} us/image")
    ratios.sort()
    print(f"seeded / unseeded time per image, median of {args.repeats}: {ratios[len(ratios) // 2]:.3f}")


if __name__ == "__main__":
    main()
