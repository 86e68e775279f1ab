"""Tables people open: TSV for code and spreadsheets, HTML for the Snakemake report, written atomically."""

import csv
import html

from .errors import InputError
from .io import atomic_path


def _format(value):
    if value is None:
        return ""
    return format(value, ".6g") if isinstance(value, float) else str(value)


def write_tsv(rows, path, columns=None):
    """Write rows of metrics as a TSV, atomically.

    Parameters
    ----------
    rows : list of dict
        A missing or None value is left empty.  Floats keep 6 significant digits.
    path : str or Path
    columns : sequence of str, optional
        The columns, in order; by default the union of the rows' keys in
        order of first appearance.
    """
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_format(r[c]) if c in r else "" for c in columns] for r in rows])


_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; font-size: 13px; margin: 1em; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: 3px 8px; border-bottom: 1px solid #ddd; text-align: right; }}
th {{ background: #f3f4f6; position: sticky; top: 0; }}
td:first-child, th:first-child {{ text-align: left; }}
tr.summary td {{ font-weight: bold; border-top: 2px solid #999; }}
</style></head><body>
<h3>{title}</h3>
<table>
<tr>{head}</tr>
{body}
</table></body></html>
"""


def write_html(rows, path, title="", digits=3):
    """Write rows of metrics as a standalone HTML table, atomically (the report shows it inline).

    Parameters
    ----------
    rows : list of dict
        As for :func:`write_tsv`; a row whose first value is ``summary`` is
        set in bold.
    path : str or Path
    title : str
        Page title and heading.
    digits : int
        Decimals shown for floats (the TSV keeps 6 significant digits).
    """
    columns = list(dict.fromkeys(k for r in rows for k in r))

    def cell(value):
        return format(value, f".{digits}f") if isinstance(value, float) else str(value)

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "\n".join(
        f'<tr{" class=summary" if r and str(next(iter(r.values()))) == "summary" else ""}>'
        + "".join(f"<td>{html.escape(cell(r[c])) if c in r else ''}</td>" for c in columns) + "</tr>"
        for r in rows)
    with atomic_path(path) as tmp:
        tmp.write_text(_HTML.format(title=html.escape(title), head=head, body=body))


def _parse(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_tsv(path):
    """The rows of a TSV written by :func:`write_tsv`: column -> int, float or str; empty cells None."""
    with open(path, newline="") as fh:
        return [{k: None if v in ("", None) else _parse(v) for k, v in r.items()}
                for r in csv.DictReader(fh, delimiter="\t")]


def read_summary(path):
    """The ``summary`` row of a metrics TSV written by :func:`write_tsv`.

    Parameters
    ----------
    path : str or Path
        A ``metrics.tsv`` of the evaluate stage.

    Returns
    -------
    dict
        Column -> value (int, float, or str); empty cells are left out.
    """
    rows = [r for r in read_tsv(path) if r.get("sample") == "summary"]
    if len(rows) != 1:
        raise InputError(path, f"has {len(rows)} rows with sample=summary, expected 1",
                         "re-run the evaluate stage to rewrite the table")
    return {k: v for k, v in rows[0].items() if k != "sample" and v is not None}
