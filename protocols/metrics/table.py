"""Every metric, defined once: what it is called, which way is better, what the reference library calls it,
which backbone output it needs, what its inputs must allow, and the function that computes it.

Scoring (`scoring.py`), the results schema (`fluxbench.results`), the registry (`fluxbench.catalog`), the
`score` command and the reports all read this table. It imports nothing heavy: a metric's compute function is
named as "module:function" and imported when it runs.

    METRICS               the metrics `--metrics` names, in order: fad, fd, kl, is, clap, kad
    metric(name)          one of them, or a one-line error
    RESULT_KEYS           results key -> ResultKey(label, lower_is_better, description), for every backbone
    sources(backbone, panns)   metric name -> (backbone name, output name) that the backbone offers
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from fluxbench import FluxbenchError

PAPER, DESCRIPTOR = "paper", "descriptor"
FADTK_BACKBONES = ("clap-laion-music", "MERT-v1-95M", "encodec-emb")
FADTK_SHORT_NAMES = {"clap-laion-music": "CLAP", "MERT-v1-95M": "MERT", "encodec-emb": "EnCodec"}
BACKBONE_CHOICES = (PAPER, DESCRIPTOR) + FADTK_BACKBONES
IS_SPLITS = 10
IS_SEED = 2020  # audioldm_eval shuffles the posteriors with RandomState(2020) before splitting


class MetricError(FluxbenchError):
    pass


@dataclass(frozen=True)
class Value:
    """One number a metric writes to the results, under the paper backbone's key."""

    key: str
    label: str  # column header, as in the paper's tables
    lower_is_better: bool
    description: str
    reference_name: str | None = None  # audioldm_eval's key for the same number
    long_label: str | None = None  # the `score` command's row label (default: label)
    descriptor_label: str | None = None  # the weight-free descriptor's label: never the name FAD
    extrapolated: bool = False  # written only when asked for (--fad-inf)


@dataclass(frozen=True)
class Metric:
    name: str  # as --metrics names it; also the results key of its first value
    summary: str
    values: tuple[Value, ...]
    paper_backbone: str  # "vggish", "panns" (the chosen CNN14 variant) or "clap"
    outputs: Mapping[str, str]  # backbone kind (paper, descriptor, fadtk) -> the embedding output it needs
    compute: str  # "module:function" taking MetricInputs, returning MetricOutcome
    in_paper: bool = True  # part of the default set
    needs_reference: bool = False  # reference embeddings
    reference_stats_serve: bool = False  # --ref-stats can stand in for the reference folder
    needs_pairs: bool = False  # generated and reference clips matched by name
    min_generated: int = 0
    min_generated_why: str = ""
    needs_captions: bool = False

    def source(self, backbone: str = PAPER, panns: str = "panns-16k") -> tuple[str, str] | None:
        """(backbone name, output name) under the `--backbone` choice, or None when it does not offer this."""
        kind = "fadtk" if backbone in FADTK_BACKBONES else backbone
        output = self.outputs.get(kind)
        if output is None:
            return None
        if kind == PAPER:
            return (panns if self.paper_backbone == "panns" else self.paper_backbone), output
        return (DESCRIPTOR if kind == DESCRIPTOR else backbone), output

    def function(self) -> Callable[..., Any]:
        module, _, name = self.compute.partition(":")
        return getattr(importlib.import_module(module), name)


_COMPUTE = "fluxbench.protocols.metrics.compute"

METRICS: tuple[Metric, ...] = (
    Metric("fad", "Frechet distance of VGGish frames (0.96 s, pre-ReLU, no PCA), all frames pooled", (
        Value("fad", "FAD", True, "Frechet distance of VGGish frame embeddings (audioldm_eval convention)",
              "frechet_audio_distance", "FAD (VGGish)", "desc. FD (frames)"),
        Value("fad_inf", "FAD-inf", True, "FAD extrapolated to infinitely many generated clips",
              descriptor_label="desc. FD-inf (frames)", extrapolated=True),
    ), "vggish", {PAPER: "frames", DESCRIPTOR: "frames", "fadtk": "frames"}, f"{_COMPUTE}:frechet",
        needs_reference=True, reference_stats_serve=True),
    Metric("fd", "Frechet distance of PANNs CNN14 2048-d clip embeddings", (
        Value("fd", "FD", True, "Frechet distance of PANNs CNN14 clip embeddings", "frechet_distance",
              "FD (PANNs)", "desc. FD (clips)"),
        Value("fd_inf", "FD-inf", True, "FD extrapolated to infinitely many generated clips",
              descriptor_label="desc. FD-inf (clips)", extrapolated=True),
    ), "panns", {PAPER: "embedding", DESCRIPTOR: "embedding"}, f"{_COMPUTE}:frechet", needs_reference=True),
    Metric("kl", "KL(reference || generated) of CNN14 class posteriors, pairs matched by file name (softmax and "
                 "sigmoid)", (
        Value("kl_softmax", "KL", True, "KL(reference || generated) of PANNs class posteriors, softmax",
              "kullback_leibler_divergence_softmax", "KL (softmax)", "desc. KL"),
        Value("kl_sigmoid", "KL-sig", True, "the sigmoid variant of the KL above",
              "kullback_leibler_divergence_sigmoid", "KL (sigmoid)", "desc. KL-sig"),
    ), "panns", {PAPER: "logits", DESCRIPTOR: "logits"}, f"{_COMPUTE}:kl", needs_reference=True,
        needs_pairs=True),
    Metric("is", f"Inception Score of CNN14 posteriors, {IS_SPLITS} splits after the RandomState({IS_SEED}) "
                 "shuffle", (
        Value("is", "IS", False, f"Inception Score over PANNs class posteriors ({IS_SPLITS} splits)",
              "inception_score_mean", "IS", "desc. IS"),
    ), "panns", {PAPER: "logits", DESCRIPTOR: "logits"}, f"{_COMPUTE}:inception",
        min_generated=IS_SPLITS, min_generated_why=f"for its {IS_SPLITS} splits"),
    Metric("clap", "mean cosine between CLAP text and audio embeddings of each prompt and its clip", (
        Value("clap", "CLAP", False, "mean text-audio cosine similarity of CLAP embeddings",
              long_label="CLAP score"),
    ), "clap", {PAPER: "audio"}, f"{_COMPUTE}:clap", needs_captions=True),
    # Beyond the paper: kadtk's Kernel Audio Distance, asked for by name.
    Metric("kad", "Kernel Audio Distance (kadtk 1.1.0): unbiased MMD of VGGish frames, Gaussian kernel, x100", (
        Value("kad", "KAD", True, "Kernel Audio Distance (kadtk convention) of VGGish frame embeddings",
              long_label="KAD (VGGish)", descriptor_label="desc. KAD"),
    ), "vggish", {PAPER: "frames", DESCRIPTOR: "frames", "fadtk": "kad_frames"}, f"{_COMPUTE}:kad",
        in_paper=False, needs_reference=True),
)
BY_NAME = {m.name: m for m in METRICS}
NAMES = tuple(BY_NAME)
PAPER_METRICS = tuple(m.name for m in METRICS if m.in_paper)


def metric(name: str) -> Metric:
    if name not in BY_NAME:
        raise MetricError(f"unknown metric {name!r}; expected one of {', '.join(NAMES)}")
    return BY_NAME[name]


def sources(backbone: str = PAPER, panns: str = "panns-16k") -> dict[str, tuple[str, str]]:
    """metric name -> (backbone name, output name) for every metric the `--backbone` choice offers."""
    found = {m.name: m.source(backbone, panns) for m in METRICS}
    return {name: source for name, source in found.items() if source is not None}


def key_prefix(backbone: str) -> str:
    """Results keys of the paper backbone are bare; the others carry the backbone ("descriptor_fad")."""
    return {PAPER: "", DESCRIPTOR: "descriptor_"}.get(backbone, f"{backbone}_")


# ---- results keys ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResultKey:
    label: str
    lower_is_better: bool
    description: str
    long_label: str  # the score command's row label
    reference_name: str | None = None


def _result_key(value: Value, backbone: str) -> ResultKey:
    if backbone == PAPER:
        return ResultKey(value.label, value.lower_is_better, value.description, value.long_label or value.label,
                         value.reference_name)
    key = key_prefix(backbone) + value.key
    if backbone == DESCRIPTOR:
        description = (f"{value.description}, on the weight-free descriptor instead" if value.key != "kad"
                       else "KAD of the weight-free descriptor frames")
        return ResultKey(value.descriptor_label or value.label, value.lower_is_better, description, key)
    short = FADTK_SHORT_NAMES[backbone]
    head, _, tail = value.label.partition("-")
    label = f"{head}-{short}" + (f"-{tail}" if tail else "")
    description = {"fad": f"Frechet distance of fadtk's {backbone} frames",
                   "fad_inf": f"FAD-{short} extrapolated to infinite N",
                   "kad": f"KAD of kadtk's {backbone} rows"}[value.key]
    return ResultKey(label, value.lower_is_better, description, key)


def _all_result_keys() -> dict[str, ResultKey]:
    # Order is the reports' default column order: the paper's metrics on the paper backbone and on the
    # descriptor (extrapolations after the measured values), then the metrics beyond the paper, then fadtk's.
    keys: dict[str, ResultKey] = {}
    for in_paper in (True, False):
        for backbone in (PAPER, DESCRIPTOR):
            for extrapolated in (False, True):
                for m in METRICS:
                    if m.in_paper == in_paper and m.source(backbone) is not None:
                        for value in m.values:
                            if value.extrapolated == extrapolated:
                                keys[key_prefix(backbone) + value.key] = _result_key(value, backbone)
    for backbone in FADTK_BACKBONES:
        for m in METRICS:
            if m.source(backbone) is not None:
                for value in m.values:
                    keys[key_prefix(backbone) + value.key] = _result_key(value, backbone)
    return keys


RESULT_KEYS: dict[str, ResultKey] = _all_result_keys()
