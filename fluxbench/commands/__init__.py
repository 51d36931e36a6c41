"""One module per `fluxbench` subcommand: argument definitions and a thin `main`. Keep imports light."""
