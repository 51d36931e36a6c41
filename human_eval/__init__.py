"""Listening tests: study design, the rating app, storage and analysis."""
