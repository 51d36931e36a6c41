"""Protocols: evaluation sets and metrics."""
