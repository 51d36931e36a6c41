"""Baseline adapters behind the one model interface."""
