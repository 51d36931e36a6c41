"""Reports: tables and figures derived from results files."""

from fluxbench import FluxbenchError


class ReportError(FluxbenchError):
    pass
