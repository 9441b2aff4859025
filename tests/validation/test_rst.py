"""reStructuredText simple tables of the generated pages (`specutils_cinn.validation.rst`)."""

import pytest

from specutils_cinn.validation.rst import simple_table


def test_columns_are_as_wide_as_their_widest_cell_and_left_aligned():
    text = simple_table(["a", "long header"], [["wider than a", "x"], ["1", "22"]])
    assert text == (
        "============  ===========\n"
        "a             long header\n"
        "============  ===========\n"
        "wider than a  x\n"
        "1             22\n"
        "============  ==========="
    )


def test_last_column_padding_and_cells_as_strings():
    text = simple_table(["n", "value"], [[1, 2.5], [300, None]], pad_last_column=True)
    assert text.splitlines() == ["===  =====", "n    value", "===  =====", "1    2.5  ",
                                 "300  None ", "===  ====="]
    # without padding, no line ends in a space
    text = simple_table(["n", "value"], [[1, 2.5], [300, ""]])
    assert text.splitlines()[3:5] == ["1    2.5", "300"]


def test_docutils_reads_it_as_a_table():
    docutils = pytest.importorskip("docutils.core")
    rows = [["Teff", "12 K", "a wider cell than its header"], ["log g", "0.03", "none"]]
    for pad in (False, True):
        doc = docutils.publish_doctree(simple_table(["parameter", "bias", "note"], rows,
                                                    pad_last_column=pad))
        entries = [e.astext() for e in doc.findall(lambda n: n.tagname == "entry")]
        assert entries == ["parameter", "bias", "note", *rows[0], *rows[1]]


@pytest.mark.parametrize(("header", "rows", "match"), [
    (["a", "b"], [], "at least one row"),
    ([], [[]], "at least one column"),
    (["a", "b"], [["1", "2"], ["3"]], "row 1 has 1 cells for 2 columns"),
])
def test_bad_tables_raise(header, rows, match):
    with pytest.raises(ValueError, match=match):
        simple_table(header, rows)
