"""The configuration schema as data: walk its keys and document them.

``config/schema.yaml`` is the single source of truth; ``config/README.md``
holds the table :func:`markdown_table` makes from it (a test keeps the two in
step).
"""

from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"
README = SCHEMA.with_name("README.md")
MARKER = "<!-- generated from schema.yaml by `python -m tileunet.config`; edit the schema, not this table -->\n"


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


def defaults(section, schema=None):
    """Every key of a config section with its schema default, sub-sections filled in recursively.

    Examples
    --------
    >>> defaults("train")["tune"]["seed_erosions"]
    [0, 1, 2, 4]
    """
    node = (schema or load_schema())["properties"][section]

    def fill(sub):
        if sub.get("type") == "object" and "properties" in sub:
            return {k: fill(v) for k, v in sub["properties"].items()}
        return sub.get("default")

    return fill(node)


def with_defaults(section, values):
    """``values`` (a config section, possibly partial) over the schema's defaults, one level of nesting deep."""
    out = defaults(section)
    for key, value in dict(values or {}).items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


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


def update_readme(readme=README, schema=SCHEMA):
    """Replace everything after :data:`MARKER` in ``readme`` with the schema's table."""
    text = Path(readme).read_text()
    head = text.split(MARKER)[0]
    Path(readme).write_text(head + MARKER + markdown_table(load_schema(schema)))


if __name__ == "__main__":
    update_readme()
