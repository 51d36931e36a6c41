"""KL divergence between classifier outputs of generated and reference clips paired by file id.

audioldm_eval's convention (the paper's "KL" is the softmax variant):
- pairs are matched by id (file basename); reference ids without a generated partner are skipped and counted,
  extra generated ids are ignored;
- per pair, sum over classes of p_ref * (log p_ref - log(p_gen + 1e-6)), i.e. KL(reference || generated) with
  the 1e-6 on the generated side only;
- softmax variant: p = softmax(logits); sigmoid variant: p = sigmoid(logits) elementwise in the same formula
  (not a Bernoulli KL: the (1 - p) terms are absent, as in the reference);
- reported value = sum over pairs / number of matched pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from fluxbench import FluxbenchError

GENERATED_EPS = 1e-6


class KLInputError(FluxbenchError):
    pass


@dataclass(frozen=True)
class KLResult:
    softmax: float
    sigmoid: float
    per_item_softmax: dict[str, float]  # in reference order
    per_item_sigmoid: dict[str, float]
    unmatched: int  # reference ids with no generated clip (skipped, as the reference does)
    unused_generated: int  # generated ids with no reference clip (ignored)

    @property
    def count(self) -> int:
        return len(self.per_item_softmax)


def kl_divergence(gen: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray]) -> KLResult:
    """KL(reference || generated) per matched id and its mean, for softmax and sigmoid probabilities."""
    ids = [key for key in ref if key in gen]
    if not ids:
        raise KLInputError(
            f"no id is shared by the {len(gen)} generated and {len(ref)} reference clips; KL pairs clips by "
            "file name, so name generated files after their reference files")
    gen_logits = _stack(gen, ids, "generated")
    ref_logits = _stack(ref, ids, "reference")
    if gen_logits.shape[1] != ref_logits.shape[1]:
        raise KLInputError(f"generated logits have {gen_logits.shape[1]} classes, reference {ref_logits.shape[1]}")
    per_softmax = pairwise_kl(_log_softmax(ref_logits), np.exp(_log_softmax(gen_logits)))
    per_sigmoid = pairwise_kl(_log_sigmoid(ref_logits), _sigmoid(gen_logits))
    return KLResult(
        softmax=float(per_softmax.sum() / len(ids)),
        sigmoid=float(per_sigmoid.sum() / len(ids)),
        per_item_softmax=dict(zip(ids, per_softmax.tolist())),
        per_item_sigmoid=dict(zip(ids, per_sigmoid.tolist())),
        unmatched=len(ref) - len(ids),
        unused_generated=sum(1 for key in gen if key not in ref),
    )


def pairwise_kl(log_p_ref: np.ndarray, p_gen: np.ndarray) -> np.ndarray:
    """Row-wise sum_c p_ref (log p_ref - log(p_gen + eps)); rows of float64 (pairs, classes)."""
    p_ref = np.exp(log_p_ref)
    return np.sum(p_ref * (log_p_ref - np.log(p_gen + GENERATED_EPS)), axis=1)


def _stack(table: Mapping[str, np.ndarray], ids: list[str], side: str) -> np.ndarray:
    rows = []
    for key in ids:
        row = np.asarray(table[key], dtype=np.float64).reshape(-1)
        if not np.isfinite(row).all():
            raise KLInputError(f"{side} logits of {key!r} contain NaN or infinite values")
        rows.append(row)
    if len({row.shape[0] for row in rows}) != 1:
        raise KLInputError(f"{side} logits differ in length across clips")
    return np.stack(rows)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _log_sigmoid(logits: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -logits)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(logits))
