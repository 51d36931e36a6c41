"""Text conditioning for FluxMusic: fine token states (T5) and a coarse pooled vector (CLAP).

`TextConditioner` is the contract every text front-end meets (the hub-backed T5 + CLAP pair here, and the
weight-free vocabulary encoder of the offline demo in `vocab_conditioner.py`). Each describes itself with
`spec()` (JSON, with a "kind") and is rebuilt by `build_conditioner(spec, folder)`.
"""

from __future__ import annotations

import abc
import gc
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from fluxbench import FluxbenchError, weights
from fluxbench.atomic import atomic_path
from fluxbench.models.fluxmusic import weight_sources
from fluxbench.runtime import canonical_json, content_hash


class ConditionerError(FluxbenchError):
    pass


@dataclass
class TextConditioning:
    txt: torch.Tensor  # [batch, tokens, context_in_dim]  fine text (T5 last hidden state)
    y: torch.Tensor  # [batch, vec_in_dim]  coarse text (CLAP pooled vector)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "TextConditioning":
        return TextConditioning(self.txt.to(device, dtype), self.y.to(device, dtype))

    def __len__(self) -> int:
        return self.txt.shape[0]

    def expand(self, batch_size: int) -> "TextConditioning":
        """A batch of one repeated `batch_size` times."""
        return TextConditioning(self.txt.expand(batch_size, -1, -1), self.y.expand(batch_size, -1))

    @staticmethod
    def cat(parts: Sequence["TextConditioning"]) -> "TextConditioning":
        return TextConditioning(torch.cat([p.txt for p in parts]), torch.cat([p.y for p in parts]))

    def __getitem__(self, rows: slice) -> "TextConditioning":
        return TextConditioning(self.txt[rows], self.y[rows])


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

    @abc.abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-able description with a "kind" key; `build_conditioner(spec, folder)` rebuilds it."""

    def negative(self, text: str, batch_size: int) -> TextConditioning:
        """The embedding of a negative prompt repeated `batch_size` times ("" is the null condition)."""
        return self.null(batch_size) if text == "" else self.encode([text]).expand(batch_size)

    def encode_many(self, captions: Sequence[str], batch_size: int) -> TextConditioning:
        """Every caption's conditioning (float32 on the CPU), encoded `batch_size` at a time."""
        captions = list(captions)
        return TextConditioning.cat([self.encode(captions[i:i + batch_size]).to("cpu", torch.float32)
                                     for i in range(0, len(captions), batch_size)])

    def release(self) -> None:
        """Free memory held by encoders (they load again on the next `encode`); nothing by default."""


# ---- T5 + CLAP ---------------------------------------------------------------------------------------------
class T5ClapConditioner(TextConditioner):
    """The paper's text front-end: T5-XXL last hidden state (fine, 4096-d per token) and the CLAP text
    tower's pooled output (coarse, 768-d), both through `transformers`.

    Defaults follow the official sampling script: both tokenizers pad to `max_tokens` = 256 with truncation and
    the encoders run without an attention mask (training masked padding and cut CLAP at 77 tokens; the
    `attention_mask` and `clap_max_tokens` options select that). The CLAP text tower is taken from the full
    `ClapModel`: loading `ClapTextModel` straight from laion/larger_clap_music leaves it randomly initialised
    (the repo's keys carry a `text_model.` prefix), which is what the official loader does.

    Either encoder can be left out (`use_t5` / `use_clap` False): its slot then holds the null ("")
    embedding. Embeddings of the null and negative prompts are cached on disk under $FLUXBENCH_CACHE, so
    later runs need neither encoder for them. Encoders load on first use and `release()` frees them.
    `encode_many` caches every caption's embedding too (in the encoders' dtype, keyed by the text, the
    encoders' weight checksums and settings), so a resumed or repeated run does not load the encoders again.
    """

    kind = "t5-clap"

    def __init__(self, t5: str = weight_sources.DEFAULT_T5, clap: str = weight_sources.DEFAULT_CLAP,
                 max_tokens: int = 256, clap_max_tokens: int = 256, attention_mask: bool = False, use_t5: bool = True,
                 use_clap: bool = True, weights_dir: str | os.PathLike | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                 context_dim: int | None = None, vector_dim: int | None = None) -> None:
        self.t5_name, self.clap_name = str(t5), str(clap)
        self.max_tokens, self.clap_max_tokens = int(max_tokens), int(clap_max_tokens)
        self.attention_mask = bool(attention_mask)
        self.use_t5, self.use_clap = bool(use_t5), bool(use_clap)
        self.weights_dir = weights_dir
        self.device = torch.device(device)
        # The official code runs both encoders in fp16 on GPU; CPU stays in float32.
        self.dtype = dtype or (torch.float16 if self.device.type == "cuda" else torch.float32)
        self._t5: tuple[Any, Any] | None = None  # (tokenizer, encoder)
        self._clap: tuple[Any, Any] | None = None  # (tokenizer, text tower)
        self._paths: dict[str, Path] = {}
        self._widths = {"t5": context_dim, "clap": vector_dim}

    # ---- description --------------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "t5": self.t5_name, "clap": self.clap_name, "max_tokens": self.max_tokens,
                "clap_max_tokens": self.clap_max_tokens, "attention_mask": self.attention_mask}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], folder: str | os.PathLike | None = None,
                  **options: Any) -> "T5ClapConditioner":
        """`options`: use_t5, use_clap, weights_dir, device, dtype. Relative local paths are read from `folder`."""
        values = {k: v for k, v in spec.items() if k != "kind"}
        for part in ("t5", "clap"):
            if part in values and folder is not None and values[part].startswith("."):
                values[part] = str(Path(folder) / values[part])
        unknown = sorted(set(values) - {"t5", "clap", "max_tokens", "clap_max_tokens", "attention_mask"})
        if unknown:
            raise ConditionerError(f"t5-clap conditioner spec: unknown field(s) {unknown}")
        return cls(**values, **options)

    def weight_requests(self, only_used: bool = True) -> list[tuple[weights.WeightSource, str | None]]:
        parts = [("t5", self.t5_name, self.use_t5), ("clap", self.clap_name, self.use_clap)]
        return [weight_sources.hub_source(kind, name) for kind, name, used in parts if used or not only_used]

    def _resolve(self, part: str) -> Path:
        if part not in self._paths:
            name = self.t5_name if part == "t5" else self.clap_name
            self._paths[part] = weights.resolve_all([weight_sources.hub_source(part, name)], self.weights_dir)[0]
        return self._paths[part]

    def _config(self, part: str) -> dict[str, Any]:
        folder = self._resolve(part)
        path = folder / "text_encoder_3" / "config.json" if (folder / "text_encoder_3").is_dir() else folder / "config.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ConditionerError(f"{path}: unreadable model config ({error})") from None

    @property
    def context_dim(self) -> int:
        if self._widths["t5"] is None:
            self._widths["t5"] = int(self._config("t5")["d_model"])
        return self._widths["t5"]

    @property
    def vector_dim(self) -> int:
        if self._widths["clap"] is None:
            self._widths["clap"] = int(self._config("clap")["text_config"]["hidden_size"])
        return self._widths["clap"]

    def identity(self) -> dict[str, str]:
        """What the embeddings depend on: each encoder's hub id, or the checksum of a local copy."""
        out = {}
        for part, name in (("t5", self.t5_name), ("clap", self.clap_name)):
            source, explicit = weight_sources.hub_source(part, name)
            out[part] = f"sha256:{weights.checksum(explicit)}" if explicit else name
        return out

    def checksums(self) -> dict[str, str]:
        """sha256 of the encoder weights in use (hashed once per file version, then remembered)."""
        used = [part for part, on in (("t5", self.use_t5), ("clap", self.use_clap)) if on]
        return {part: weights.checksum(self._resolve(part)) for part in used}

    # ---- encoders -----------------------------------------------------------------------------------
    def _load_t5(self) -> tuple[Any, Any]:
        if self._t5 is None:
            from transformers import AutoTokenizer, T5EncoderModel

            folder = self._resolve("t5")
            # Two hub layouts: the SD3 repo (text_encoder_3/ + tokenizer_3/) or a plain T5 repo.
            sd3 = (folder / "text_encoder_3").is_dir()
            model_dir, tokenizer_dir = (folder / "text_encoder_3", folder / "tokenizer_3") if sd3 else (folder, folder)
            self._t5 = (_load(AutoTokenizer, tokenizer_dir, "T5 tokenizer"),
                        _load(T5EncoderModel, model_dir, "T5 encoder", torch_dtype=self.dtype).to(self.device))
        return self._t5

    def _load_clap(self) -> tuple[Any, Any]:
        if self._clap is None:
            from transformers import AutoTokenizer, ClapModel

            folder = self._resolve("clap")
            model = _load(ClapModel, folder, "CLAP model", torch_dtype=self.dtype)
            self._clap = (_load(AutoTokenizer, folder, "CLAP tokenizer"), model.text_model.to(self.device))
        return self._clap

    def release(self) -> None:
        if self._t5 is None and self._clap is None:
            return
        self._t5 = self._clap = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _tokens(self, tokenizer: Any, captions: Sequence[str], length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = tokenizer(list(captions), padding="max_length", max_length=length, truncation=True,
                          return_tensors="pt")
        mask = batch["attention_mask"].to(self.device) if self.attention_mask else None
        return batch["input_ids"].to(self.device), mask

    @torch.inference_mode()
    def _encode_t5(self, captions: Sequence[str]) -> torch.Tensor:
        tokenizer, model = self._load_t5()
        ids, mask = self._tokens(tokenizer, captions, self.max_tokens)
        return model(input_ids=ids, attention_mask=mask).last_hidden_state.float().cpu()

    @torch.inference_mode()
    def _encode_clap(self, captions: Sequence[str]) -> torch.Tensor:
        tokenizer, model = self._load_clap()
        ids, mask = self._tokens(tokenizer, captions, self.clap_max_tokens)
        return model(input_ids=ids, attention_mask=mask).pooler_output.float().cpu()

    def encode(self, captions: Sequence[str]) -> TextConditioning:
        """float32 CPU tensors: txt [B, max_tokens, context_dim], y [B, vector_dim]."""
        captions = list(captions)
        empty = None if self.use_t5 and self.use_clap else self.cached("")
        txt = self._encode_t5(captions) if self.use_t5 else empty.txt.expand(len(captions), -1, -1)
        y = self._encode_clap(captions) if self.use_clap else empty.y.expand(len(captions), -1)
        return TextConditioning(txt, y)

    def null(self, batch_size: int) -> TextConditioning:
        return self.cached("").expand(batch_size)

    def negative(self, text: str, batch_size: int) -> TextConditioning:
        return self.cached(text).expand(batch_size)

    # ---- disk cache of fixed prompts ----------------------------------------------------------------
    def cache_path(self, text: str) -> Path:
        key = content_hash({"identity": self.identity(), "spec": self.spec(), "text": text}, 32)
        return weights.cache_dir() / "text-embeddings" / f"{key}.safetensors"

    def prompt_cache_paths(self, captions: Sequence[str]) -> dict[str, Path]:
        """Where each distinct caption's embedding is cached (the encoders' checksums are computed once)."""
        encoders = canonical_json({"checksums": self.checksums(), "spec": self.spec(), "dtype": str(self.dtype),
                                   "use": [self.use_t5, self.use_clap]})
        folder = weights.cache_dir() / "text-embeddings" / "prompts"
        return {text: folder / f"{content_hash([encoders, text], 32)}.safetensors" for text in dict.fromkeys(captions)}

    def encode_many(self, captions: Sequence[str], batch_size: int) -> TextConditioning:
        """Every caption's conditioning (float32 on the CPU): read from the disk cache, the missing ones encoded
        `batch_size` at a time and stored. Values pass through the encoders' dtype either way, so a cached run
        equals an uncached one."""
        from safetensors.torch import load_file, save_file

        captions = list(captions)
        paths = self.prompt_cache_paths(captions)
        found: dict[str, TextConditioning] = {}
        for text, path in paths.items():
            if path.is_file():
                stored = load_file(str(path))
                found[text] = TextConditioning(stored["txt"], stored["y"]).to("cpu", torch.float32)
        missing = [text for text in paths if text not in found]
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            encoded = self.encode(chunk).to("cpu", self.dtype)
            for row, text in enumerate(chunk):
                with atomic_path(paths[text]) as tmp:
                    save_file({"txt": encoded.txt[row:row + 1].contiguous(), "y": encoded.y[row:row + 1].contiguous()},
                              str(tmp), metadata={"text": text})
                found[text] = encoded[row:row + 1].to("cpu", torch.float32)
        return TextConditioning.cat([found[text] for text in captions])

    def cached(self, text: str) -> TextConditioning:
        """The full (both encoders) embedding of one fixed prompt, from the disk cache or computed and stored."""
        from safetensors.torch import load_file, save_file

        path = self.cache_path(text)
        if path.is_file():
            stored = load_file(str(path))
            return TextConditioning(stored["txt"], stored["y"])
        if not (self.use_t5 and self.use_clap):
            left_out = " and ".join(n for n, on in (("T5", self.use_t5), ("CLAP", self.use_clap)) if not on)
            raise ConditionerError(
                f"the embedding of {text!r} is not cached yet ({path}); run once with the {left_out} encoder "
                f"available so it is computed and stored, then it can be left out")
        embedding = TextConditioning(self._encode_t5([text]), self._encode_clap([text]))
        with atomic_path(path) as tmp:
            save_file({"txt": embedding.txt.contiguous(), "y": embedding.y.contiguous()}, str(tmp),
                      metadata={"text": text, "spec": json.dumps(self.spec())})
        return embedding


def _load(cls: Any, folder: Path, label: str, **kwargs: Any) -> Any:
    try:
        loaded = cls.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, KeyError) as error:
        raise ConditionerError(f"cannot load the {label} from {folder}: {str(error).splitlines()[0]}") from None
    return loaded.eval().requires_grad_(False) if hasattr(loaded, "eval") else loaded


# ---- dispatch ----------------------------------------------------------------------------------------------
def build_conditioner(spec: dict[str, Any], folder: str | os.PathLike | None = None, **options: Any) -> TextConditioner:
    """The conditioner a spec describes: "t5-clap" (hub encoders; options use_t5, use_clap, weights_dir, device,
    dtype) or "vocab" (the offline encoder trained with the model, weights in `folder`)."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == T5ClapConditioner.kind:
        return T5ClapConditioner.from_spec(spec, folder, **options)
    if kind == "vocab":
        from fluxbench.models.fluxmusic.vocab_conditioner import VocabConditioner

        return VocabConditioner.from_spec(spec, folder)
    raise ConditionerError(f"conditioner spec: unknown kind {kind!r}; expected 't5-clap' or 'vocab'")
