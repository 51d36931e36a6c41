"""Evaluation sets: items of (id, caption, reference audio)."""

from fluxbench.protocols.sets.base import EvalSet, SetItem

__all__ = ["EvalSet", "SetItem"]
