"""Copy the headline numbers of the generated validation pages into docs/validation.rst and README.

The validation pages (``docs/validation/4most-hr-lte.rst``, ``4most-lr-lte.rst``) are written by
``scripts/validation_report.py``. This script reads their tables and writes

- the summary table of ``docs/validation.rst`` (between the ``validation-summary`` comment
  markers): scatter and 68 % / 95 % coverage at S/N 250 and 50 for both models, with the
  targets of the page's target table;
- the HR precision at S/N 250 quoted in ``README.rst`` (the sentence "... the HR model reaches
  N K in Teff, N in log g and N dex in [Fe/H]").

Run it after regenerating the pages; ``--check`` only says whether the files are up to date
(exit status 1 if not)::

    python scripts/validation_summary.py
    python scripts/validation_summary.py --check
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"HR": "docs/validation/4most-hr-lte.rst", "LR": "docs/validation/4most-lr-lte.rst"}
SNRS = ("250", "50")
BEGIN = ".. validation-summary: begin (written by scripts/validation_summary.py; do not edit)"
END = ".. validation-summary: end"
README_SENTENCE = re.compile(
    r"the HR model reaches(\s+)\S+ K in Teff, \S+ in log g and \S+ dex in \[Fe/H\]")


def list_tables(text: str) -> dict[str, list[list[str]]]:
    """The ``list-table`` directives of a generated page: title -> rows of cells (first one
    wins when titles repeat)."""
    out: dict[str, list[list[str]]] = {}
    for block in text.split("\n.. list-table::")[1:]:
        lines = block.split("\n")
        rows: list[list[str]] = []
        for line in lines[1:]:
            if line.startswith("   * - "):
                rows.append([line[7:]])
            elif line.startswith("     - ") and rows:
                rows[-1].append(line[7:])
            elif line.strip() and not line.startswith("   :"):
                break
        out.setdefault(lines[0].strip(), rows)
    return out


def table_starting(tables: dict[str, list[list[str]]], start: str) -> list[list[str]]:
    """The table whose title starts with ``start``."""
    for title, rows in tables.items():
        if title.startswith(start):
            return rows
    raise ValueError(f"no table titled {start!r}...")


def page_numbers(path: Path) -> dict:
    """Model name, held-out counts, targets and (scatter, in 68 %, in 95 %) per S/N and row."""
    text = path.read_text()
    tables = list_tables(text)
    items = {row[0]: row[1] for row in tables[""] if len(row) > 1}
    model = re.search(r"``([^`]+)``", items["model"]).group(1)
    stars, spectra = (int(v) for v in items["held-out stars / spectra"].split("/"))
    target_rows = tables["S/N 250"]  # the target table (the per-S/N tables give a count)
    if target_rows[0][:2] != ["parameter", "target"]:
        raise ValueError(f"{path}: the first 'S/N 250' table is not the target table")
    targets = {r[0]: f"{float(r[1]):.0f}" if float(r[1]) >= 10 else f"{float(r[1]):.2f}"
               for r in target_rows[1:]}
    stats = {}
    for snr in SNRS:
        rows = table_starting(tables, f"S/N {snr} per A")
        head = rows[0]
        i_unit, i_sc = head.index("unit"), head.index("scatter")
        i68, i95 = head.index("in 68 %"), head.index("in 95 %")
        stats[snr] = {r[0]: (r[i_unit], r[i_sc], r[i68], r[i95]) for r in rows[1:]}
    return {"model": model, "stars": stars, "spectra": spectra, "targets": targets,
            "stats": stats}


def summary_block(numbers: dict[str, dict]) -> str:
    """The summary paragraph and table of docs/validation.rst."""
    hr, lr = numbers["HR"], numbers["LR"]
    if (hr["stars"], hr["spectra"]) != (lr["stars"], lr["spectra"]):
        raise ValueError("the HR and LR pages have different held-out sets")
    version = {m["model"].rsplit("-v", 1)[1] for m in (hr, lr)}
    intro = (
        f"Summary of the bundled models (``{hr['model']}``, ``{lr['model']}``) on the "
        f"{hr['stars']} held-out stars ({hr['spectra']} spectra): scatter (standard deviation of "
        "posterior median minus truth) and, in brackets, the fractions of true values inside "
        "the central 68 % and 95 % intervals, with the posterior calibration "
        "(:ref:`posterior-calibration`) cross-fitted over the stars; targets from Ksoll et al. "
        "(2026) at S/N 250."
    )
    if len(version) != 1:
        raise ValueError(f"the pages describe different versions: {sorted(version)}")
    widths = (10, 7, 19, 19, 19, 19)
    rule = "  ".join("=" * w for w in widths)

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rows = [rule, line(["parameter", "target"] + [f"{arm}, S/N {snr}" for arm in ("HR", "LR")
                                                  for snr in SNRS]), rule]
    for name, (unit, *_rest) in hr["stats"]["250"].items():
        cells = [f"{name} ({unit})" if unit == "K" else name, hr["targets"].get(name, "")]
        for m in (hr, lr):
            for snr in SNRS:
                _unit, sc, c68, c95 = m["stats"][snr][name]
                cells.append(f"{sc} ({c68}/{c95})")
        rows.append(line(cells))
    rows.append(rule)
    return "\n".join([BEGIN, "", wrap(intro), "", *rows, "", END])


def wrap(text: str, width: int = 96) -> str:
    """Wrap a paragraph at ``width`` characters."""
    out, cur = [], ""
    for word in text.split():
        if cur and len(cur) + 1 + len(word) > width:
            out.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    return "\n".join([*out, cur])


def updated_validation_rst(text: str, block: str) -> str:
    """docs/validation.rst with the block between the markers replaced."""
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + block + text[stop:]


def updated_readme(text: str, hr: dict) -> str:
    """README.rst with the HR precision at S/N 250 of the page."""
    st = hr["stats"]["250"]
    teff, logg, feh = (float(st[p][1]) for p in ("Teff", "log g", "[Fe/H]"))
    new, n = README_SENTENCE.subn(
        lambda m: (f"the HR model reaches{m.group(1)}{teff:.0f} K in Teff, {logg:.2f} in log g "
                   f"and {feh:.2f} dex in [Fe/H]"), text)
    if n != 1:
        raise ValueError("README.rst: the S/N 250 sentence was not found exactly once")
    return new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report whether files are current")
    args = ap.parse_args(argv)
    numbers = {arm: page_numbers(ROOT / p) for arm, p in PAGES.items()}
    files = {
        ROOT / "docs/validation.rst": lambda t: updated_validation_rst(t, summary_block(numbers)),
        ROOT / "README.rst": lambda t: updated_readme(t, numbers["HR"]),
    }
    stale = []
    for path, update in files.items():
        old = path.read_text()
        new = update(old)
        if new != old:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new)
    verb = "out of date" if args.check else "updated"
    print(f"{verb}: {', '.join(map(str, stale))}" if stale else "up to date")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
