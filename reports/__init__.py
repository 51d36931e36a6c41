"""Reports: tables and figures derived from results files."""
