"""fluxbench: evaluation, benchmarking and a model zoo for text-to-music generation."""

__version__ = "0.1.0"


class FluxbenchError(Exception):
    """A problem the user can fix; the CLI prints its message as one line, without a traceback."""
