"""Metrics: FAD / FD / KL / IS / CLAP score and their backbones."""
