"""The configuration schema as data: walk its keys and document them.

``config/schema.yaml`` is the single source of truth; ``config/README.md``
holds the table :func:`markdown_table` makes from it (a test keeps the two in
step).
"""

from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"


def load_schema(path=SCHEMA):
    """The schema as a dict."""
    with open(path) as fh:
        return yaml.safe_load(fh)


def iter_keys(schema, prefix=""):
    """Yield ``(dotted.key, subschema)`` for every leaf and section of the schema, depth first."""
    for name, sub in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        yield key, sub
        if sub.get("type") == "object":
            yield from iter_keys(sub, key + ".")


def _fmt_default(value):
    return "`" + yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip() + "`"


def markdown_table(schema):
    """A Markdown table of every leaf key: key, type, default, description."""
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, sub in iter_keys(schema):
        if sub.get("type") == "object":
            continue
        kind = sub.get("type", "")
        if "enum" in sub:
            kind = " \\| ".join(map(str, sub["enum"]))
        desc = sub.get("description", "").replace("|", "\\|")
        rows.append(f"| `{key}` | {kind} | {_fmt_default(sub.get('default'))} | {desc} |")
    return "\n".join(rows) + "\n"
