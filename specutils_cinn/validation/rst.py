"""reStructuredText tables of the generated documentation pages.

The scripts (``scripts/``) and benchmarks (``benchmarks/``) that write tables for the
documentation format them with `simple_table`; any title, caption or comment around a table
stays with the script that writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["simple_table"]


def simple_table(
    header: Sequence[Any], rows: Sequence[Sequence[Any]], *, pad_last_column: bool = False
) -> str:
    """A reStructuredText simple table of one header row and the body ``rows``.

    Each column is as wide as its widest cell (header included), cells are left-aligned, and
    columns are separated by two spaces; rules of ``=`` sit above and below the header and
    below the body. In reStructuredText a row whose first cell is empty continues the row
    above it, so give each row a first cell.

    Parameters
    ----------
    header : sequence
        The column names; each cell is written as ``str(cell)``.
    rows : sequence of sequence
        The body, one sequence per row, as many cells as ``header``.
    pad_last_column : bool, optional
        Pad the cells of the last column with spaces to the column's width (trailing spaces)
        rather than ending each line at its last character, as some generated pages have it.

    Returns
    -------
    str
        The table's lines joined by newlines, without a final newline.

    Raises
    ------
    ValueError
        If ``header`` or ``rows`` is empty, or a row has not as many cells as ``header``.

    Examples
    --------
    >>> from specutils_cinn.validation.rst import simple_table
    >>> print(simple_table(["parameter", "bias"], [["Teff", "12 K"], ["log g", "0.03"]]))
    =========  ====
    parameter  bias
    =========  ====
    Teff       12 K
    log g      0.03
    =========  ====
    """
    head = [str(c) for c in header]
    body = [[str(c) for c in row] for row in rows]
    if not head:
        raise ValueError("a table needs at least one column")
    if not body:
        raise ValueError(f"a table needs at least one row below its header {head}")
    for i, row in enumerate(body):
        if len(row) != len(head):
            raise ValueError(f"row {i} has {len(row)} cells for {len(head)} columns: {row}")
    widths = [max(len(c) for c in col) for col in zip(head, *body, strict=True)]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: list[str]) -> str:
        text = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        return text if pad_last_column else text.rstrip()

    return "\n".join([rule, line(head), rule, *map(line, body), rule])
