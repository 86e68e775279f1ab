import pytest

from tileunet.errors import InputError
from tileunet.samples import read_sample_table

HEADER = "sample\timage\tlabels\tsplit\n"


def table(tmp_path, rows, header=HEADER):
    p = tmp_path / "samples.tsv"
    p.write_text(header + "".join("\t".join(r) + "\n" for r in rows))
    return p


def test_reads_rows_in_order(tmp_path):
    p = table(tmp_path, [("a", "a.tif", "a_l.tif", "train"), ("b", "b.tif", "", "predict"), ("c", "c.tif", "c_l.tif", "test")])
    s = read_sample_table(p)
    assert list(s) == ["a", "b", "c"]
    assert s["b"].labels == "" and s["b"].split == "predict"


@pytest.mark.parametrize("rows, message", [
    ([("a", "a.tif", "l.tif", "train"), ("a", "b.tif", "l.tif", "val")], "duplicate sample name 'a'"),
    ([("a", "a.tif", "l.tif", "val")], "training split is empty"),
    ([("a", "a.tif", "l.tif", "training")], "split 'training'"),
    ([("a", "a.tif", "", "train")], "has no labels"),
    ([("a b", "a.tif", "l.tif", "train")], "sample name 'a b'"),
    ([("a", "", "l.tif", "train")], "has no image"),
])
def test_refuses_bad_tables(tmp_path, rows, message):
    p = table(tmp_path, rows)
    with pytest.raises(InputError, match=message) as err:
        read_sample_table(p)
    assert str(p) in str(err.value) and "Fix:" in str(err.value)


def test_duplicate_error_names_the_line(tmp_path):
    p = table(tmp_path, [("a", "a.tif", "l.tif", "train"), ("a", "b.tif", "l.tif", "val")])
    with pytest.raises(InputError, match=r"line 3"):
        read_sample_table(p)


def test_missing_table_and_columns(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_sample_table(tmp_path / "nope.tsv")
    with pytest.raises(InputError, match="lacks column"):
        read_sample_table(table(tmp_path, [("a", "a.tif", "train")], header="sample\timage\tsplit\n"))
