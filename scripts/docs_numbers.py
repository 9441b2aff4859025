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

Each substitution is preceded by a comment naming its source. The sources: the validation
pages of the bundled models (scatter, coverage, targets met, the Sun), the emulator's accuracy
table, the synthesis pages (solar residuals, sampling), the benchmark outputs written with
``--rst`` (``docs/survey/bench_survey.rst``; ``docs/models/bench_predict.rst`` is included as a
table) and the bundled model files (sizes; weight counts from the safetensors headers, without
reading a tensor). A source whose layout changes makes this script fail with the page named.

``audit`` finds the measured-looking numbers (a number with a unit such as K, dex, km/s, ms,
MB, %, x; a decimal with two or more digits) in the prose of a page that are neither a
substitution nor covered by an entry of the allowlist ``tests/data/docs_numbers_allowed.txt``
(defined numbers: interval levels, the IAU solar reference, code constants, versions,
identifiers; each with its reason). ``tests/test_docs_numbers.py`` checks that the generated
files are what this script writes now (``--check``) and that the audit finds nothing.

The readers of every source, the writers and the audit share the page parsers and run as one
command, so they stay in one file, above the project's ~600 lines per module.

Usage (after regenerating any of the source pages)::

    python scripts/docs_numbers.py            # rewrite the generated files
    python scripts/docs_numbers.py --check    # exit 1 if any of them is out of date
    python scripts/docs_numbers.py --list     # every number with its source
    python scripts/docs_numbers.py --audit    # unsourced numbers in the prose (exit 1 if any)
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
    "Allowed",
    "Hit",
    "ListTable",
    "Number",
    "audit",
    "audit_text",
    "audited_pages",
    "generated_files",
    "list_tables",
    "load_allowlist",
    "main",
    "numbers",
    "numbers_rst",
    "prose_lines",
    "readme_block",
    "safetensors_shapes",
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
    """The ``list-table`` directives of an RST file, in order.

    Parameters
    ----------
    path : `~pathlib.Path`
        The RST file.

    Returns
    -------
    list of `ListTable`
        Its tables, each with every row (header first) as cell texts.
    """
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
    """One quoted number.

    Attributes
    ----------
    name : str
        Its substitution name (``hr_teff_250`` for ``|hr_teff_250|``).
    text : str
        What the substitution stands for, with its unit (``19 K``).
    source : str
        Where it comes from: the generated page, table, row and column, or the file.
    """

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
        full = re.match(r"``([^`]+)``", info(page, "model")).group(1)
        out.append(Number(f"{model}_validated_model", f"``{full}``", f"{src}, 'model'"))
        out.append(Number(f"{model}_validated_version", "v" + full.rsplit("-v", 1)[1],
                          f"{src}, 'model'"))
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
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
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


def _col(t: ListTable, row: str, column: str, part: int) -> str:
    """One of the 'a / b' values of a coverage cell."""
    return t.cell(row, column).split("/")[part].strip()


def _calibrated(page: Path) -> list[str]:
    """Parameters the shipped posterior calibration widens (scale != 1 or floor != 0)."""
    t = table(page, "Posterior calibration shipped with the model")
    return [r[0] for r in t.rows[1:] if float(r[1]) != 1 or float(r[2]) != 0]


def _span(values: Iterable[str]) -> str:
    vals = sorted(values, key=float)
    return vals[0] if vals[0] == vals[-1] else f"{vals[0]}-{vals[-1]}"


def _median(cell: str) -> str:
    """The posterior median of a 'median [p16, p84] (offset)' cell."""
    return cell.split("[")[0].strip()


def calibration_numbers() -> list[Number]:
    """Coverage of the calibrated and the uncalibrated posteriors, and the Sun, per model."""
    out: list[Number] = []
    for model, page in PAGES.items():
        src = _rel(page)
        cov = table(page, "Fraction of true values inside the central 68 % / 95 %")
        snrs = [c for c in cov.header[1:] if c.startswith("S/N")]
        cal = _calibrated(page)
        for level, part in (("68", 0), ("95", 1)):
            out.append(Number(
                f"{model}_calibrated_coverage_{level}",
                _span(_col(cov, p, c, part) for p in cal for c in snrs),
                f"{src}, table 'Fraction of true values inside ...', {level} % column of every "
                f"S/N, parameters the shipped calibration widens ({', '.join(cal)}): range"))
        out.append(Number(
            f"{model}_feh_coverage_95", _span(_col(cov, "[Fe/H]", c, 1) for c in snrs),
            f"{src}, table 'Fraction of true values inside ...', [Fe/H], 95 %, every S/N: range"))
        unc = table(page, "Uncalibrated network")
        out.append(Number(
            f"{model}_uncalibrated_logg_68_250", _col(unc, "log g", "S/N 250", 0),
            f"{src}, table 'Uncalibrated network ...', log g, S/N 250, 68 %"))
        sun = _sun_table(page)
        for spectrum, key in (("HARPS (Ganymede)", "harps"), ("UVES", "uves")):
            row = next(r for r in sun.rows[1:] if r[0] == spectrum and r[1] == "250")
            cells = dict(zip(sun.header, row, strict=True))
            where = f"{src}, section 'The Sun', {spectrum}, S/N 250"
            out.append(Number(f"{model}_sun_{key}_teff", _median(cells["Teff"]) + " K",
                              f"{where}, Teff median"))
            out.append(Number(f"{model}_sun_{key}_logg", _median(cells["log g"]),
                              f"{where}, log g median"))
            out.append(Number(f"{model}_sun_{key}_feh", _median(cells["[Fe/H]"]),
                              f"{where}, [Fe/H] median"))
            out.append(Number(f"{model}_sun_{key}_coverage", cells["coverage"],
                              f"{where}, coverage"))
    return out


def _sun_table(page: Path) -> ListTable:
    for t in list_tables(page):
        if t.rows and t.header[:3] == ["spectrum", "S/N", "coverage"]:
            return t
    raise KeyError(f"{_rel(page)}: no table of the Sun")


def targets_met() -> list[Number]:
    """Which of the published target precisions each model meets at S/N 250."""
    out = []
    for model, page in PAGES.items():
        t = next(t for t in list_tables(page) if t.title == "S/N 250" and "verdict" in t.header)
        failed = [r[0] for r in t.rows[1:] if "pass" not in t.cell(r[0], "verdict")]
        n = len(t.rows) - 1
        text = (f"all {n} targets" if not failed else
                f"{n - len(failed)} of the {n} targets (not {', '.join(failed)})")
        out.append(Number(f"{model}_targets_met", text,
                          f"{_rel(page)}, table 'S/N 250' (comparison with the targets), verdicts"))
    return out


# --- the bundled model files -------------------------------------------------------------------

DATA = ROOT / "specutils_cinn" / "data"
TEST_MODEL = ROOT / "tests" / "data" / "linear-gaussian-model"


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors file's JSON header (no tensor is read, nothing unpickled).

    Parameters
    ----------
    path : `~pathlib.Path`
        A ``.safetensors`` file.

    Returns
    -------
    dict of str to list of int
        Tensor name to shape.
    """
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def _mb(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB"


def _files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")]


def model_file_numbers() -> list[Number]:
    """Values (parameters) and file sizes of the bundled models, and the size of the package
    data and of the test model."""
    out = []
    for folder in sorted((DATA / "models").iterdir()):
        m = re.match(r"4most-(hr|lr)-", folder.name)
        if not m or not folder.is_dir():
            continue
        key = m.group(1)
        weights, emulator = folder / "weights.safetensors", folder / "emulator.safetensors"
        n = sum(math.prod(s) for s in safetensors_shapes(weights).values())
        out.append(Number(f"{key}_weights_values", f"{n / 1e6:.1f} M",
                          f"{_rel(weights)}: values in its tensors (safetensors header)"))
        out.append(Number(f"{key}_weights_size", _mb(weights.stat().st_size),
                          f"{_rel(weights)}: file size"))
        if emulator.is_file():
            out.append(Number(f"{key}_emulator_size", _mb(emulator.stat().st_size),
                              f"{_rel(emulator)}: file size"))
        meta = json.loads((folder / "metadata.json").read_text())
        threshold = (meta.get("emulator") or {}).get("chi2_threshold")
        if threshold is not None:
            out.append(Number(f"{key}_chi2_threshold", f"{threshold:g}",
                              f"{_rel(folder / 'metadata.json')}: emulator.chi2_threshold"))
    data = sum(p.stat().st_size for p in _files(DATA))
    out.append(Number("package_data_size", _mb(data),
                      f"{_rel(DATA)}: size of its files (models, example spectrum, line data)"))
    test = sum(p.stat().st_size for p in _files(TEST_MODEL))
    out.append(Number("test_model_size", f"{test / 1e3:.0f} kB",
                      f"{_rel(TEST_MODEL)}: size of its files"))
    return out


# --- the emulator's accuracy -------------------------------------------------------------------

EMULATOR_ACCURACY = DOCS / "emulator" / "accuracy_seed.rst"


def _simple_table(path: Path) -> list[list[str]]:
    """The rows (header first) of the first simple table (``===`` rules) of a page."""
    rows, rules = [], 0
    for line in path.read_text().splitlines():
        if re.match(r"^=+( +=+)*$", line):
            rules += 1
            if rules == 3:
                break
            continue
        if rules:
            rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def emulator_numbers() -> list[Number]:
    """How far the emulators are from the accuracy targets, and how the error falls with the
    number of training stars (from emulator_accuracy.py's table, 'all' segments)."""
    text = EMULATOR_ACCURACY.read_text()
    m = re.search(r"median <= ([\d.]+), 99th percentile <= ([\d.]+)", text)
    t_med, t_p99 = float(m.group(1)), float(m.group(2))
    rows = _simple_table(EMULATOR_ACCURACY)
    head = rows[0]
    jn, jm, jp = (head.index(c) for c in ("Training stars", "Median abs", "99th pct abs"))
    by_grid: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows[1:]:
        if r[head.index("Segment")] == "all":
            by_grid.setdefault(r[0], []).append(
                (int(r[jn].split()[0]), float(r[jm]), float(r[jp])))
    margin, excess, gain, needed = [], [], [], []
    for runs in by_grid.values():
        runs.sort()
        (n0, m0, p0), (n1, m1, p1) = runs[0], runs[-1]
        doublings = math.log2(n1 / n0)
        margin.append(t_med / m1)
        excess.append(p1 / t_p99)
        g_med, g_p99 = (m0 / m1) ** (1 / doublings), (p0 / p1) ** (1 / doublings)
        gain += [g_med, g_p99]
        needed.append(n1 * 2 ** (math.log(p1 / t_p99) / math.log(g_p99)))
    src = f"{_rel(EMULATOR_ACCURACY)}, segment 'all' of each grid"
    rng = lambda v, f: f"{min(v):{f}}-{max(v):{f}}"  # noqa: E731
    hundreds = [f"{round(n, -2):,.0f}" for n in sorted(needed)]
    return [
        Number("emulator_median_margin", rng(margin, ".1f"),
               f"{src}: median target / median at the full training set"),
        Number("emulator_p99_excess", rng(excess, ".1f"),
               f"{src}: 99th percentile at the full training set / its target"),
        Number("emulator_doubling_gain", rng(gain, ".1f"),
               f"{src}: error ratio per doubling of the training stars, median and 99th "
               "percentile, from the smallest to the full training set"),
        Number("emulator_stars_needed", f"{hundreds[0]}-{hundreds[-1]}",
               f"{src}: training stars at which the 99th percentile reaches its target, "
               "extrapolated at that ratio per doubling"),
    ]


EMULATOR_KINDS_V2 = DOCS / "emulator" / "kinds_v2.rst"


def emulator_v2_numbers() -> list[Number]:
    """The v2 emulator kinds against each other (scripts/emulator_accuracy.py --kinds gp pca,
    'all' segments): how much smaller the Gaussian process's residuals are at the full training
    set, and how much each kind's error falls from half to all of the training stars."""
    rows = _simple_table(EMULATOR_KINDS_V2)
    head = rows[0]
    jn, jm, jp = (head.index(c) for c in ("Training stars", "Median abs", "99th pct abs"))
    runs: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for r in rows[1:]:
        if r[head.index("Segment")] == "all":
            grid, kind = r[0].split()
            runs.setdefault((grid, kind.strip("()")), []).append(
                (int(r[jn].split()[0]), float(r[jm]), float(r[jp])))
    grids = sorted({g for g, _ in runs})

    def rng(values: list[float]) -> str:
        lo, hi = f"{min(values):.1f}", f"{max(values):.1f}"
        return lo if lo == hi else f"{lo}-{hi}"

    def gain(grid: str, kind: str, col: int) -> float:
        (n0, *a), (n1, *b) = sorted(runs[(grid, kind)])[0], sorted(runs[(grid, kind)])[-1]
        return (a[col] / b[col]) ** (1 / math.log2(n1 / n0))

    def ratio(grid: str, col: int) -> float:
        return max(runs[(grid, "pca")])[1 + col] / max(runs[(grid, "gp")])[1 + col]

    src = f"{_rel(EMULATOR_KINDS_V2)}, segment 'all' of each grid ({', '.join(grids)})"
    out = [Number("emu_v2_median_ratio", rng([ratio(g, 0) for g in grids]),
                  f"{src}: MLP median / Gaussian-process median, full training set"),
           Number("emu_v2_p99_ratio", rng([ratio(g, 1) for g in grids]),
                  f"{src}: MLP / Gaussian-process 99th percentile, full training set")]
    for kind, tag in (("gp", "gp"), ("pca", "mlp")):
        for col, what in ((0, "median"), (1, "p99")):
            out.append(Number(f"emu_v2_gain_{what}_{tag}", rng([gain(g, kind, col) for g in grids]),
                              f"{src}: {kind} {what} ratio per doubling of the training stars"))
    return out


# --- synthesis ----------------------------------------------------------------------------------

SOLAR_RESIDUALS = DOCS / "synthesis" / "solar_residuals.rst"
SAMPLING_GIANT = DOCS / "synthesis" / "sampling_giant.rst"


def synthesis_numbers() -> list[Number]:
    """The blue-arm solar residuals with and without the extended line lists, and the sampling
    error of the v1 grid's step for a cool giant."""
    t = list_tables(SOLAR_RESIDUALS)[0]
    row = next(r for r in t.rows[1:] if r[:2] == ["HB", "HARPS"])
    cells = dict(zip(t.header, row, strict=True))
    src = f"{_rel(SOLAR_RESIDUALS)}, HB, HARPS"
    out = [Number(f"solar_hb_{what}_{key}", f"{float(cells[f'{col} {lists}']):.2f}",
                  f"{src}, {col} {lists}")
           for what, col in (("rms", "RMS"), ("corr", "corr"))
           for key, lists in (("ges", "GES"), ("ext", "ext."))]
    rows = _simple_table(SAMPLING_GIANT)
    j = rows[0].index("max abs dF HR")
    v1 = next(r for r in rows[1:] if float(r[0]) == 0.03)
    out.append(Number("sampling_v1_error_hr", f"{float(v1[j]):.3f}",
                      f"{_rel(SAMPLING_GIANT)}, step 0.03 A, max abs dF HR"))
    return out


# --- benchmark outputs -------------------------------------------------------------------------

BENCH_SURVEY = DOCS / "survey" / "bench_survey.rst"


def _literal_rows(path: Path) -> list[list[str]]:
    """The lines of a page's literal blocks, split at runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in path.read_text().splitlines()
            if line.startswith("    ") and line.strip()]


def _rss_by_size(rss: dict[int, float]) -> str:
    """``"1163 MB at 1,002 files, 1282 MB at 9,999 and ..."``: RSS per number of files."""
    items = [f"{rss[n]:.0f} MB at {n:,}" for n in sorted(rss)]
    items[0] += " files"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def survey_numbers() -> list[Number]:
    """Reading cost, time per spectrum and peak memory of the bench_survey run."""
    rows = _literal_rows(BENCH_SURVEY)
    src = _rel(BENCH_SURVEY)
    stage = {r[0]: r[1:] for r in rows if len(r) == 3}
    header = next(r for r in rows if r[0] == "stage")
    old, direct = header.index("Spectrum.read") - 1, header.index("direct") - 1
    runs = [r for r in rows if len(r) >= 8 and r[0] != "run"]
    columns = next(r for r in rows if r[0] == "run")
    if columns[-2:] != ["median RSS MB", "peak RSS MB"]:
        raise ValueError(f"{src}: expected the last columns 'median RSS MB', 'peak RSS MB', "
                         f"got {columns[-2:]}: rerun benchmarks/bench_survey.py")
    survey = {int(r[1]): float(r[-1]) for r in runs if r[0] == "survey"}
    median = {int(r[1]): float(r[-2]) for r in runs if r[0] == "survey"}
    old_rss = next(float(r[-1]) for r in runs if r[0] == "survey, Spectrum.read")
    read_old, read_new = float(stage["read: total"][old]), float(stage["read: total"][direct])
    what = "ms per spectrum by stage"
    return [
        Number("survey_read_ms", f"{read_new:.1f} ms", f"{src}, {what}, read: total, direct"),
        Number("survey_read_ms_old", f"{read_old:.0f} ms",
               f"{src}, {what}, read: total, Spectrum.read"),
        Number("survey_read_ratio", f"{read_old / read_new:.0f}",
               f"{src}, {what}, read: total, Spectrum.read / direct"),
        Number("survey_predict_ms", f"{float(stage['predict: total'][direct]):.0f} ms",
               f"{src}, {what}, predict: total, direct"),
        Number("survey_write_ms", f"{float(stage['write parts'][direct]):.1f} ms",
               f"{src}, {what}, write parts, direct"),
        Number("survey_rss_sizes", _rss_by_size(survey),
               f"{src}, survey, peak RSS at each number of files"),
        Number("survey_rss_median_sizes", _rss_by_size(median),
               f"{src}, survey, median RSS at each number of files"),
        Number("survey_rss_old", f"{old_rss:.0f} MB",
               f"{src}, survey, Spectrum.read, peak RSS"),
        Number("survey_rss_gb", f"{max(survey.values()) / 1e3:.1f} GB",
               f"{src}, survey, largest peak RSS"),
    ]


#: Every group of numbers, in the order they are written.
SOURCES: tuple[Callable[[], list[Number]], ...] = (
    validation_numbers, calibration_numbers, targets_met, model_file_numbers,
    emulator_numbers, emulator_v2_numbers, synthesis_numbers, survey_numbers)


def numbers() -> list[Number]:
    """Every quoted number, from its source.

    Returns
    -------
    list of `Number`
        From every function of `SOURCES`, in order.

    Raises
    ------
    ValueError
        If two numbers have the same name.
    """
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
    """The text of docs/_generated/numbers.rst.

    Parameters
    ----------
    nums : sequence of `Number`
        Every number.

    Returns
    -------
    str
        A header comment, then per number a ``.. source:`` comment and its definition.
    """
    return (".. This file is generated by scripts/docs_numbers.py from the sources named before\n"
            ".. each substitution; do not edit it.\n\n" + _definitions(nums))


def readme_block(readme: str, nums: Sequence[Number]) -> str:
    """README.rst with its numbers block holding the substitutions it uses.

    Parameters
    ----------
    readme : str
        The README's text, with its ``BEGIN`` and ``END`` comments.
    nums : sequence of `Number`
        Every number.

    Returns
    -------
    str
        The text with the block between the comments rewritten.

    Raises
    ------
    ValueError
        If the comments are missing or the README uses an undefined substitution.
    """
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
    """What this script writes.

    Returns
    -------
    dict of `~pathlib.Path` to str
        Each generated file (and README.rst) and the text it should have.
    """
    nums = numbers()
    return {
        GENERATED / "numbers.rst": numbers_rst(nums),
        GENERATED / "validation_summary.rst": validation_summary(),
        README: readme_block(README.read_text(), nums),
    }


# --- the audit of the prose ---------------------------------------------------------------------

#: Units after which a number reads as a measurement.
UNITS = (r"K|dex|km/s|km s-1|ms|s|min|minutes|h|hours|kB|MB|GB|%|x|×|M|spectra/s|objects/s"
         r"|spectra per second|times")
#: A measured-looking number: one with a unit, or a decimal with two or more digits.
MEASURED = re.compile(
    r"(?<![\w./|-])[-+−]?\d[\d,]*(?:\.\d+)?(?:\s?[-–]\s?\d[\d,]*(?:\.\d+)?)?\s?(?:" + UNITS
    + r")(?![\w/])"
    r"|(?<![\w./|-])[-+]?0\.\d{2,3}\b|(?<![\w./|-])[-+]?\d+\.\d{2,}\b")
#: Directives whose body is code, maths or markup rather than prose.
CODE_DIRECTIVES = frozenset({
    "code-block", "code", "sourcecode", "literalinclude", "math", "doctest", "testcode",
    "testoutput", "plot", "include", "toctree", "image", "raw", "highlight", "automodapi",
    "automodule", "autoclass", "autofunction", "only", "parsed-literal"})
#: Inline markup removed before scanning: literals, roles, substitutions, link targets.
INLINE = re.compile(r"``.*?``|:[\w:-]+:`[^`]*`|\|[A-Za-z0-9_]+\||<https?://[^>]*>")


@dataclass(frozen=True)
class Hit:
    """A measured-looking number in the prose of a page.

    Attributes
    ----------
    path : str
        The page, relative to the repository.
    line : int
        Its line number (1-based).
    number : str
        The number as written, with its unit.
    text : str
        The line, stripped.
    """

    path: str
    line: int
    number: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.number!r} in {self.text!r}"


def prose_lines(text: str) -> Iterable[tuple[int, str]]:
    """The prose lines of an RST text.

    Left out: literal blocks (after ``::``), comments, the bodies of code, maths, include and
    similar directives (`CODE_DIRECTIVES`), doctest input and output, directive options. The
    bodies of other directives (notes, tables, figure captions) are prose.

    Parameters
    ----------
    text : str
        RST source.

    Yields
    ------
    tuple of (int, str)
        Line number (1-based) and the line.
    """
    skip_indent: int | None = None  # skipping a block indented deeper than this
    doctest = False
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None:
            if not s or indent > skip_indent:
                continue
            skip_indent = None
        if doctest:
            if s:
                continue
            doctest = False
        if not s:
            continue
        if s.startswith((">>>", "... ")) or s == "...":
            doctest = True
            continue
        m = re.match(r"\.\.\s+([\w:-]+)::", s)
        if s.startswith(".. ") and not s.startswith(".. |"):
            if not m or m.group(1) in CODE_DIRECTIVES:
                skip_indent = indent  # a comment or a code-like directive: all of its body
            continue
        if s == "..":
            skip_indent = indent
            continue
        if re.match(r":[\w -]+:(\s|$)", s):
            continue  # a directive option or a field
        if s.endswith("::"):
            skip_indent = indent
            s = s[:-2]
            if not s:
                continue
        yield i, line


def audit_text(text: str, path: str = "<text>", allow: Sequence[Allowed] = ()) -> list[Hit]:
    """The measured-looking numbers of an RST text's prose that no allowlist entry covers.

    Literals, roles (``:math:``, ``:ref:``), substitutions and link targets are blanked first;
    the README's generated block of substitutions (from ``BEGIN`` on) is not prose.

    Parameters
    ----------
    text : str
        RST source.
    path : str, optional
        The name the hits carry.
    allow : sequence of `Allowed`, optional
        Defined numbers to let through (none by default).

    Returns
    -------
    list of `Hit`
        Every unsourced measured-looking number, in order.
    """
    text = text.split(BEGIN, 1)[0]
    hits = []
    for i, line in prose_lines(text):
        clean = INLINE.sub(lambda m: " " * len(m.group()), line)
        for m in MEASURED.finditer(clean):
            if not any(a.covers(line, m.start(), m.end()) for a in allow):
                hits.append(Hit(path, i, m.group().strip(), line.strip()))
    return hits


@dataclass(frozen=True)
class Allowed:
    """A defined (not measured) number the prose may quote: a pattern and why.

    Attributes
    ----------
    pattern : str
        A regular expression; a hit is allowed when one match of it in the line covers it.
    reason : str
        Why the number is defined rather than measured.
    """

    pattern: str
    reason: str

    def covers(self, line: str, start: int, end: int) -> bool:
        """Whether a match of the pattern in ``line`` spans the columns ``start:end``."""
        return any(m.start() <= start and end <= m.end()
                   for m in re.finditer(self.pattern, line))


def load_allowlist(path: Path) -> list[Allowed]:
    """Read an allowlist file: blocks of a ``pattern:`` line and a ``reason:`` line.

    Parameters
    ----------
    path : `~pathlib.Path`
        The file (``tests/data/docs_numbers_allowed.txt``); ``#`` lines are comments.

    Returns
    -------
    list of `Allowed`
        Its entries, in order.
    """
    entries, pattern = [], None
    for line in path.read_text().splitlines():
        if line.startswith("pattern: "):
            pattern = line[len("pattern: "):]
        elif line.startswith("reason: ") and pattern is not None:
            entries.append(Allowed(pattern, line[len("reason: "):]))
            pattern = None
    return entries


ALLOWLIST = ROOT / "tests" / "data" / "docs_numbers_allowed.txt"


def audited_pages() -> list[Path]:
    """The pages whose prose is audited.

    Returns
    -------
    list of `~pathlib.Path`
        README.rst and every hand-written top-level page of the documentation (not the
        generated includes in sub-folders, not the changelog, not the API page).
    """
    return [README] + [p for p in sorted(DOCS.glob("*.rst"))
                       if p.name not in ("changes.rst", "api.rst")]


def audit(path: Path, allow: Sequence[Allowed] | None = None) -> list[Hit]:
    """The unsourced measured-looking numbers of one page.

    Parameters
    ----------
    path : `~pathlib.Path`
        An RST page (README.rst: its generated block is left out).
    allow : sequence of `Allowed`, optional
        Defined numbers to let through; default the entries of `ALLOWLIST`.

    Returns
    -------
    list of `Hit`
        See `audit_text`.
    """
    allow = load_allowlist(ALLOWLIST) if allow is None else allow
    return audit_text(path.read_text(), _rel(path), allow)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0, or 1 when ``--check`` finds a stale file or ``--audit`` an unsourced number.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when a generated file is out of date")
    parser.add_argument("--list", action="store_true", help="print every number and its source")
    parser.add_argument("--audit", action="store_true",
                        help="also list unsourced measured-looking numbers of the prose (exit 1 "
                             "if any)")
    args = parser.parse_args(argv)
    files = generated_files()
    if args.list:
        for n in numbers():
            print(f"|{n.name}| = {n.text}    ({n.source})")
    if args.audit:
        hits = [h for p in audited_pages() for h in audit(p)]
        for h in hits:
            print(h)
        if hits:
            return 1
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
