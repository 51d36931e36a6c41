"""One module per `fluxbench` subcommand: argument definitions and a thin `main`. Keep imports light."""


def aligned_table(header, rows) -> str:
    """Plain-text columns: the header, a rule of dashes, then the rows, each cell padded to its column."""
    table = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    table.insert(1, ["-" * width for width in widths])
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table)
