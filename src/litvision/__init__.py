"""litvision: a PyTorch Lightning research template for image classification."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("litvision")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"
