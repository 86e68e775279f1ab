"""Tables: TSV round trips, HTML for the report, and the summary row."""

import csv

import pytest

import tileunet.metrics as tm
from tileunet import tables
from tileunet.errors import InputError


def test_write_tsv_round_trip(tmp_path):
    rows = [{"sample": "a", "plane": 0, "iou": 1 / 3, "tp": 2}, {"sample": "summary", "plane": "", "n_images": 1}]
    path = tmp_path / "m.tsv"
    tables.write_tsv(rows, path)
    with open(path) as fh:
        table = list(csv.DictReader(fh, delimiter="\t"))
    assert table[0] == {"sample": "a", "plane": "0", "iou": "0.333333", "tp": "2", "n_images": ""}
    assert table[1]["sample"] == "summary" and table[1]["n_images"] == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["m.tsv"]
    assert tables.read_summary(path) == {"n_images": 1}


def test_write_html_shows_every_row_escaped_with_the_summary_in_bold(tmp_path):
    from html.parser import HTMLParser

    class Cells(HTMLParser):
        rows, classes = [], []

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows.append([])
                self.classes.append(dict(attrs).get("class"))

        def handle_data(self, data):
            if self.rows and data.strip():
                self.rows[-1].append(data.strip())

    rows = [{"sample": "a<b>", "iou": 1 / 3, "tp": 2}, {"sample": "summary", "iou": 0.5, "n_images": 1}]
    path = tmp_path / "m.html"
    tables.write_html(rows, path, "T & t")
    parser = Cells()
    parser.feed(path.read_text())
    assert parser.rows == [["sample", "iou", "tp", "n_images"], ["a<b>", "0.333", "2"], ["summary", "0.500", "1"]]
    assert parser.classes == [None, None, "summary"]
    assert "<title>T &amp; t</title>" in path.read_text() and [p.name for p in tmp_path.iterdir()] == ["m.html"]


def test_read_summary_parses_numbers_and_refuses_tables_without_one(tmp_path):
    path = tmp_path / "m.tsv"
    rows = [{"sample": "a", "plane": 0, "iou": 0.5, "merges": 2}]
    tables.write_tsv(rows + [{"sample": "summary", "plane": "", **tm.summarize(rows)}], path)
    assert tables.read_summary(path) == {"n_images": 1, "iou": 0.5, "merges": 2}
    tables.write_tsv(rows, path)
    with pytest.raises(InputError, match="0 rows with sample=summary"):
        tables.read_summary(path)


def test_none_is_an_empty_cell_and_columns_can_be_fixed(tmp_path):
    tables.write_tsv([{"a": None, "b": 1.5}], tmp_path / "t.tsv", columns=["b", "a", "c"])
    assert (tmp_path / "t.tsv").read_text() == "b\ta\tc\n1.5\t\t\n"
