"""Recurrent classifiers that read an image row by row (report 002)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from litvision.models.base import ClassifierNet

_CELLS: dict[str, type[nn.RNNBase]] = {"elman": nn.RNN, "lstm": nn.LSTM}


class RowRNN(ClassifierNet):
    """Elman RNN or LSTM over image rows: each of the H rows is one time step of W x C features.

    The features are the hidden state after the last row; a linear layer maps them to the classes.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        cell: Literal["elman", "lstm"] = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"cell={cell!r} is not one of {sorted(_CELLS)}")
        channels, _, width = input_shape
        self.rnn = _CELLS[cell](width * channels, hidden_size, num_layers=num_layers, batch_first=True)
        self.num_features = hidden_size
        self.stage_names = ["rnn"]  # its output: the hidden state after each row
        self.head = nn.Linear(hidden_size, num_classes)

    def pooled_features(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n, h, w * c)
        out, _ = self.rnn(rows)
        return out[:, -1]
