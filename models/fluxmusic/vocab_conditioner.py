"""A text encoder that needs no download: learned embeddings over a caption vocabulary.

It stands in for the T5 + CLAP pair in the offline demo. Captions are lower-cased and split into words;
`txt` holds one learned vector per word (plus a learned position vector), padded to `max_tokens`, in the role
of the T5 token states; `y`, in the role of the CLAP pooled vector, is either a projection of the mean word
vector ("mean") or a projection of the caption's bag of words ("bag-of-words", one learned vector per word,
summed over the caption's distinct words / sqrt(count)).
The empty caption (the null condition) maps to all-padding tokens and a learned null vector. Its weights are
trained together with the transformer and saved beside it as `conditioner.safetensors`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from fluxbench import FluxbenchError
from fluxbench.models.fluxmusic.conditioner import TextConditioner, TextConditioning

WEIGHTS_FILE = "conditioner.safetensors"
PAD, UNKNOWN = "<pad>", "<unk>"
POOLINGS = ("mean", "bag-of-words")
# Bag-of-words input scale: the pooled vector starts several times larger than the time embedding, so the
# transformer's modulation reads the caption from the first steps (a mean-pooled vector starts ~5x smaller
# and a short training run learns to ignore it).
BAG_SCALE = 4.0
_WORD = re.compile(r"[a-z0-9]+")


def words(caption: str) -> list[str]:
    return _WORD.findall(caption.lower())


class VocabConditioner(nn.Module, TextConditioner):
    kind = "vocab"
    trainable = True  # trained with the transformer (frozen encoders' outputs are cached instead)

    def __init__(self, vocabulary: Sequence[str], context_dim: int = 48, vector_dim: int = 32,
                 max_tokens: int = 32, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise FluxbenchError(f"vocab conditioner: pooling {pooling!r}; expected one of {list(POOLINGS)}")
        self.pooling = pooling
        vocabulary = [w for w in vocabulary if w not in (PAD, UNKNOWN)]
        if len(set(vocabulary)) != len(vocabulary):
            raise FluxbenchError("vocab conditioner: the vocabulary lists a word twice")
        self.vocabulary = list(vocabulary)
        self.context_dim, self.vector_dim, self.max_tokens = int(context_dim), int(vector_dim), int(max_tokens)
        self._index = {w: i for i, w in enumerate([PAD, UNKNOWN, *self.vocabulary])}
        self.token_embedding = nn.Embedding(len(self._index), self.context_dim)
        self.position_embedding = nn.Parameter(0.1 * torch.randn(self.max_tokens, self.context_dim))
        if pooling == "bag-of-words":
            self.bag_projection = nn.Linear(len(self._index), self.vector_dim, bias=False)
            nn.init.normal_(self.bag_projection.weight, std=1.0)
        else:
            self.pooled = nn.Linear(self.context_dim, self.vector_dim)
        self.null_vector = nn.Parameter(torch.zeros(self.vector_dim))

    @classmethod
    def from_captions(cls, captions: Iterable[str], **dims: Any) -> "VocabConditioner":
        """A fresh (randomly initialised) encoder over every word of `captions`, sorted."""
        vocabulary = sorted({w for caption in captions for w in words(caption)})
        if not vocabulary:
            raise FluxbenchError("vocab conditioner: the captions contain no words")
        return cls(vocabulary, **dims)

    def token_ids(self, captions: Sequence[str]) -> torch.Tensor:
        """[batch, max_tokens] word indices (unknown words -> <unk>, padding -> 0); longer captions are cut."""
        unknown = self._index[UNKNOWN]
        ids = torch.zeros(len(captions), self.max_tokens, dtype=torch.long)
        for row, caption in enumerate(captions):
            tokens = [self._index.get(w, unknown) for w in words(caption)][: self.max_tokens]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return ids

    def encode(self, captions: Sequence[str]) -> TextConditioning:
        device = self.position_embedding.device
        ids = self.token_ids(list(captions)).to(device)
        txt = self.token_embedding(ids) + self.position_embedding
        present = (ids != 0).unsqueeze(-1).to(txt.dtype)
        counts = present.sum(dim=1)
        if self.pooling == "bag-of-words":
            bag = torch.zeros(len(captions), len(self._index), device=device).scatter_(1, ids, 1.0)
            bag[:, 0] = 0.0  # padding is not a word
            pooled = self.bag_projection(bag * (BAG_SCALE * torch.rsqrt(bag.sum(-1, keepdim=True).clamp(min=1))))
        else:
            pooled = self.pooled((self.token_embedding(ids) * present).sum(dim=1) / counts.clamp(min=1))
        y = torch.where(counts > 0, pooled, self.null_vector.expand(len(captions), -1))
        return TextConditioning(txt, y)

    def null(self, batch_size: int) -> TextConditioning:
        return self.encode([""] * batch_size)

    # ---- persistence ----------------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocabulary": self.vocabulary, "context_dim": self.context_dim,
                "vector_dim": self.vector_dim, "max_tokens": self.max_tokens, "pooling": self.pooling}

    def save(self, folder: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        from fluxbench.atomic import atomic_path

        path = Path(folder) / WEIGHTS_FILE
        with atomic_path(path) as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(tmp))
        return path

    @classmethod
    def from_spec(cls, spec: dict[str, Any], folder: str | os.PathLike | None = None) -> "VocabConditioner":
        """Rebuild from `spec`; with a folder, load its trained weights (strictly), else start fresh."""
        try:
            encoder = cls(spec["vocabulary"], spec["context_dim"], spec["vector_dim"], spec["max_tokens"],
                          spec.get("pooling", "mean"))  # folders written before pooling was a choice: "mean"
        except KeyError as missing:
            raise FluxbenchError(f"vocab conditioner spec: missing field {missing}") from None
        if folder is not None:
            from safetensors.torch import load_file

            path = Path(folder) / WEIGHTS_FILE
            if not path.is_file():
                raise FluxbenchError(f"{path}: missing (the vocab conditioner's trained weights)")
            try:
                state = load_file(str(path))
            except Exception as error:  # safetensors raises its own error types for damaged files
                raise FluxbenchError(f"{path}: not a readable safetensors file ({error}); the model folder is "
                                     f"damaged, export it again from a checkpoint") from None
            try:
                encoder.load_state_dict(state, strict=True)
            except RuntimeError as error:
                first = str(error).strip().splitlines()[0]
                raise FluxbenchError(f"{path}: does not fit the spec's vocabulary/dimensions ({first})") from None
        return encoder.eval()
