"""Write the numbers the README and the documentation quote, from the generated pages they
come from.

Measured numbers (precisions, coverages, timings, sizes) are produced by the report and
benchmark scripts, which write generated pages (``docs/validation/*.rst``,
``docs/real_stars/*.rst``, ``docs/synthesis/*.rst``, ...), and by the model files themselves.
Prose must not copy them by hand: it uses substitutions (``|hr_teff_250|``) that this script
defines from those sources, in

- ``docs/_generated/numbers.rst``, read into every page by ``docs/conf.py`` (``rst_prolog``);
- the block at the end of ``README.rst`` between the comments ``.. numbers: begin`` and
  ``.. numbers: end`` (only the substitutions README uses: PyPI renders it without Sphinx);
- generated tables included by pages (``docs/_generated/validation_summary.rst``).

Each substitution is preceded by a comment naming its source. ``tests/test_docs_numbers.py``
checks that these files are what this script writes now (``--check``) and that the prose of the
README and the hand-written pages quotes no measured number outside a substitution (an
explicit list of defined quantities, e.g. the solar reference values, is allowed).

Usage (after regenerating any of the source pages)::

    python scripts/docs_numbers.py            # rewrite the generated files
    python scripts/docs_numbers.py --check    # exit 1 if any of them is out of date
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ListTable",
    "Number",
    "generated_files",
    "list_tables",
    "main",
    "numbers",
    "readme_block",
]

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GENERATED = DOCS / "_generated"
README = ROOT / "README.rst"
BEGIN, END = ".. numbers: begin", ".. numbers: end"


# --- reading generated pages -------------------------------------------------------------------

@dataclass(frozen=True)
class ListTable:
    """One ``list-table`` of a generated page.

    Attributes
    ----------
    title : str
        The directive's argument ('' when it has none).
    rows : list of list of str
        Every row, the header row first.
    """

    title: str
    rows: list[list[str]]

    @property
    def header(self) -> list[str]:
        """The first row."""
        return self.rows[0]

    def cell(self, row: str, column: str) -> str:
        """The cell in the row whose first cell is ``row`` and the column headed ``column``."""
        j = self.header.index(column)
        for r in self.rows[1:]:
            if r[0] == row:
                return r[j]
        raise KeyError(f"no row {row!r} in table {self.title!r}")

    def column(self, column: str) -> dict[str, str]:
        """First cell -> cell of ``column``, for every row below the header."""
        j = self.header.index(column)
        return {r[0]: r[j] for r in self.rows[1:]}


def list_tables(path: Path) -> list[ListTable]:
    """The ``list-table`` directives of an RST file, in order."""
    tables: list[ListTable] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\.\. list-table::\s*(.*)$", lines[i])
        if not m:
            i += 1
            continue
        title, rows = m.group(1).strip(), []
        i += 1
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("   ")):
            s = lines[i].strip()
            if s.startswith("* - "):
                rows.append([s[4:]])
            elif s.startswith("- ") and rows:
                rows[-1].append(s[2:])
            elif s == "* -" :
                rows.append([""])
            elif s == "-" and rows:
                rows[-1].append("")
            i += 1
        tables.append(ListTable(title, rows))
    return tables


def table(path: Path, title: str) -> ListTable:
    """The table of a page whose title starts with ``title``."""
    for t in list_tables(path):
        if t.title.startswith(title):
            return t
    raise KeyError(f"{path.relative_to(ROOT)}: no list-table titled {title!r}...")


def info(path: Path, item: str) -> str:
    """A value of a validation page's first (item / value) table."""
    return list_tables(path)[0].cell(item, "value")


# --- the numbers -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Number:
    """One quoted number: its substitution name, its text and where it comes from."""

    name: str
    text: str
    source: str


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


PAGES = {"hr": DOCS / "validation" / "4most-hr-lte.rst",
         "lr": DOCS / "validation" / "4most-lr-lte.rst"}
SHORT = {"Teff": "teff", "log g": "logg", "[Fe/H]": "feh", "vmic": "vmic", "v sin i": "vsini",
         "[Mg/Fe]": "mgfe", "[Ca/Fe]": "cafe", "[Ti/Fe]": "tife", "[Mn/Fe]": "mnfe",
         "[Ni/Fe]": "nife", "[Li/Fe]": "life"}
UNIT = {"Teff": " K"}


def _snr_table(page: Path, snr: int) -> ListTable:
    return table(page, f"S/N {snr} per A")


def _n_stars(page: Path) -> int:
    return int(info(page, "held-out stars / spectra").split("/")[0])


def validation_numbers() -> list[Number]:
    """Scatter at S/N 250 and 50 and coverage ranges of the bundled models' validation pages."""
    out: list[Number] = []
    for model, page in PAGES.items():
        src = _rel(page)
        for snr in (250, 50):
            t = _snr_table(page, snr)
            for label, short in SHORT.items():
                scatter = t.cell(label, "scatter")
                unit = UNIT.get(label, " dex" if label.startswith("[") or label == "log g"
                                else " km/s")
                unit = "" if label == "log g" else unit
                out.append(Number(f"{model}_{short}_{snr}", scatter + unit,
                                  f"{src}, table 'S/N {snr} per A', {label}, scatter"))
        n = _n_stars(page)
        out.append(Number(f"{model}_heldout_stars", str(n),
                          f"{src}, 'held-out stars / spectra'"))
    n = _n_stars(PAGES["hr"])
    # binomial standard error of a coverage fraction over n independent stars
    for level, p in (("68", 0.68), ("95", 0.95)):
        out.append(Number(f"coverage_error_{level}", f"{math.sqrt(p * (1 - p) / n):.2f}",
                          f"binomial sqrt(p (1-p) / n) with n = {n} held-out stars"))
    # relative standard error of a standard deviation from n stars
    out.append(Number("scatter_relative_error", f"{100 / math.sqrt(2 * (n - 1)):.0f} %",
                      f"1 / sqrt(2 (n - 1)) with n = {n} held-out stars"))
    return out


def validation_summary() -> str:
    """The summary table of docs/validation.rst: scatter (68 % / 95 % coverage) at S/N 250 and 50
    for both bundled models, with the published targets."""
    targets = _targets()
    cols = [("hr", 250), ("hr", 50), ("lr", 250), ("lr", 50)]
    rows = [["parameter", "target"] + [f"{m.upper()}, S/N {s}" for m, s in cols]]
    cov = {m: table(PAGES[m], "Fraction of true values inside the central 68 % / 95 %")
           for m in PAGES}
    for label in SHORT:
        row = [label, targets.get(label, "")]
        for m, s in cols:
            scatter = _snr_table(PAGES[m], s).cell(label, "scatter")
            c68, c95 = (x.strip() for x in cov[m].cell(label, f"S/N {s}").split("/"))
            row.append(f"{scatter} ({c68}/{c95})")
        rows.append(row)
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    lines = [
        ".. This table is generated by scripts/docs_numbers.py from "
        + " and ".join(_rel(p) for p in PAGES.values()) + "; do not edit it.",
        "",
        rule, fmt(rows[0]), rule, *(fmt(r) for r in rows[1:]), rule, "",
    ]
    return "\n".join(lines)


def _targets() -> dict[str, str]:
    """The published precisions, from the page's comparison table (HR and LR share them)."""
    for t in list_tables(PAGES["hr"]):
        if t.title == "S/N 250" and "target" in t.header:
            return t.column("target")
    raise KeyError(f"{_rel(PAGES['hr'])}: no target comparison table")


#: Every group of numbers, in the order they are written.
SOURCES: tuple[Callable[[], list[Number]], ...] = (validation_numbers,)


def numbers() -> list[Number]:
    """Every quoted number, from its source."""
    out = [n for source in SOURCES for n in source()]
    names = [n.name for n in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"substitution names defined twice: {dup}")
    return out


def _definitions(nums: Iterable[Number]) -> str:
    lines = []
    for n in nums:
        lines.append(f".. source: {n.source}")
        lines.append(f".. |{n.name}| replace:: {n.text}")
    return "\n".join(lines) + "\n"


def numbers_rst(nums: Sequence[Number]) -> str:
    """The text of docs/_generated/numbers.rst."""
    return (".. This file is generated by scripts/docs_numbers.py from the sources named before\n"
            ".. each substitution; do not edit it.\n\n" + _definitions(nums))


def readme_block(readme: str, nums: Sequence[Number]) -> str:
    """README.rst with its numbers block holding the substitutions it uses."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.rst has no '{BEGIN}' ... '{END}' block")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    used = set(re.findall(r"\|([a-z0-9_]+)\|", head + tail))
    known = {n.name for n in nums}
    unknown = sorted(used - known)
    if unknown:
        raise ValueError(f"README.rst uses undefined substitutions: {unknown}")
    block = ("\n.. Written by scripts/docs_numbers.py from the generated pages named in each "
             "comment; do not edit.\n\n" + _definitions(n for n in nums if n.name in used))
    return head + BEGIN + "\n" + block + "\n" + END + tail


def generated_files() -> dict[Path, str]:
    """Path -> the text this script writes there."""
    nums = numbers()
    return {
        GENERATED / "numbers.rst": numbers_rst(nums),
        GENERATED / "validation_summary.rst": validation_summary(),
        README: readme_block(README.read_text(), nums),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when a generated file is out of date")
    parser.add_argument("--list", action="store_true", help="print every number and its source")
    args = parser.parse_args(argv)
    files = generated_files()
    if args.list:
        for n in numbers():
            print(f"|{n.name}| = {n.text}    ({n.source})")
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"out of date: {_rel(p)} (run python scripts/docs_numbers.py)")
        return 1 if stale else 0
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(files[p])
        print(f"wrote {_rel(p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
