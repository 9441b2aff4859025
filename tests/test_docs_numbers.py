"""Every measured number of the README and the documentation comes from one generated source
(scripts/docs_numbers.py): the generated files are current, and the prose quotes no
measured-looking number outside a substitution except the defined ones of the allowlist."""

import io
import re
from pathlib import Path

import pytest
from repo_scripts import script_module

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "docs_numbers.py"


@pytest.fixture(scope="module")
def dn():
    if not SCRIPT.is_file() or not (ROOT / "docs").is_dir():
        pytest.skip("scripts/docs_numbers.py or docs/ is not in this checkout")
    with script_module("docs_numbers") as module:
        yield module


def test_generated_files_are_current(dn, capsys):
    assert dn.main(["--check"]) == 0, capsys.readouterr().out


def test_prose_quotes_no_unsourced_number(dn):
    hits = [h for page in dn.audited_pages() for h in dn.audit(page)]
    assert not hits, ("measured-looking numbers outside a substitution (use one from "
                      "scripts/docs_numbers.py, or allowlist a defined number in "
                      "tests/data/docs_numbers_allowed.txt):\n"
                      + "\n".join(map(str, hits)))


def test_a_pasted_number_is_caught(dn):
    readme = dn.README.read_text()
    assert "reaches\n|hr_teff_250| in Teff" in readme
    pasted = readme.replace("reaches\n|hr_teff_250| in Teff", "reaches\n17 K in Teff")
    hits = dn.audit_text(pasted, "README.rst", dn.load_allowlist(dn.ALLOWLIST))
    assert [h.number for h in hits] == ["17 K"]
    assert hits[0].text.startswith("17 K in Teff")


@pytest.mark.parametrize(("text", "found"), [
    ("The HR model reaches 17 K in Teff.", ["17 K"]),
    ("A scatter of 0.052 in [Fe/H] and 1.3 GB of memory.", ["0.052", "1.3 GB"]),
    ("It runs 73.7x faster, in 3.5 ms, and 45 % of them.", ["73.7x", "3.5 ms", "45 %"]),
    ("It reaches |hr_teff_250| in Teff, ``0.052`` and :math:`0.05`.", []),
    ("Run::\n\n    took 17 K and 0.052\n\nDone.", []),
    (">>> round(x, 2)\n0.97\n\nDone.", []),
    (".. code-block:: text\n\n   0.052 dex\n\nDone.", []),
    (".. a comment: 17 K\n   still the comment 0.052\n\nDone.", []),
    (".. list-table::\n\n   * - Teff\n     - 19 K\n", ["19 K"]),
    (".. figure:: x.png\n   :width: 100%\n\n   Caption at 0.052 dex.\n", ["0.052 dex"]),
])
def test_audit_text(dn, text, found):
    assert [h.number for h in dn.audit_text(text)] == found


def test_allowlist_covers_only_its_context(dn):
    allow = dn.load_allowlist(dn.ALLOWLIST)
    assert allow and all(a.reason for a in allow)
    assert not dn.audit_text("the reference (5772 K, 4.44, 0.00) and the 68 % interval",
                             allow=allow)
    assert [h.number for h in dn.audit_text("a Teff of 5745 K and 45 % coverage",
                                            allow=allow)] == ["5745 K", "45 %"]


def test_every_allowlist_entry_is_needed(dn):
    allow = dn.load_allowlist(dn.ALLOWLIST)
    pages = dn.audited_pages()
    unused = [a.pattern for a in allow
              if not any(dn.audit(p, [b for b in allow if b is not a]) for p in pages)]
    assert not unused, f"allowlist entries that cover nothing: {unused}"


def test_every_substitution_is_defined(dn):
    known = {n.name for n in dn.numbers()}
    for page in dn.audited_pages():
        text = page.read_text()
        # outside literals, where |...| would be an operator or a table rule
        text = re.sub(r"``.*?``", "", text, flags=re.S)
        used = set(re.findall(r"(?<![\w|])\|([a-z][a-z0-9_]*)\|(?![\w|])", text))
        assert used <= known, f"{page.name}: undefined substitutions {sorted(used - known)}"


def test_numbers_name_their_source(dn):
    nums = dn.numbers()
    assert len({n.name for n in nums}) == len(nums)
    assert all(n.text and n.source for n in nums)
    text = dn.numbers_rst(nums)
    assert text.count(".. source: ") == text.count(" replace:: ") == len(nums)


def test_model_sizes_from_the_files(dn):
    folder = next((dn.DATA / "models").glob("4most-hr-*"))
    shapes = dn.safetensors_shapes(folder / "weights.safetensors")
    assert shapes and all(isinstance(s, list) for s in shapes.values())
    nums = {n.name: n.text for n in dn.model_file_numbers()}
    size = (folder / "weights.safetensors").stat().st_size
    assert nums["hr_weights_size"] == f"{size / 1e6:.1f} MB"


def test_readme_renders_without_warnings(dn):
    core = pytest.importorskip("docutils.core")
    warnings = io.StringIO()
    core.publish_string(dn.README.read_text(), writer="html",
                        settings_overrides={"warning_stream": warnings, "report_level": 2,
                                            "halt_level": 5})
    assert warnings.getvalue() == ""
