"""Text conditioning for FluxMusic: fine token states (T5) and a coarse pooled vector (CLAP).

`TextConditioner` is the contract every text front-end meets (the hub-backed T5 + CLAP pair, and the
weight-free vocabulary encoder of the offline demo).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class TextConditioning:
    txt: torch.Tensor  # [batch, tokens, context_in_dim]  fine text (T5 last hidden state)
    y: torch.Tensor  # [batch, vec_in_dim]  coarse text (CLAP pooled vector)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "TextConditioning":
        return TextConditioning(self.txt.to(device, dtype), self.y.to(device, dtype))

    def __len__(self) -> int:
        return self.txt.shape[0]


class TextConditioner(abc.ABC):
    context_dim: int  # feature width of `txt`
    vector_dim: int  # width of `y`
    max_tokens: int

    @abc.abstractmethod
    def encode(self, captions: Sequence[str]) -> TextConditioning:
        """Encode captions (a batch) into fine and coarse conditioning."""

    @abc.abstractmethod
    def null(self, batch_size: int) -> TextConditioning:
        """The unconditional embedding (empty caption) repeated `batch_size` times."""
