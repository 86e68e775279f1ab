"""The configuration schema as data: walk its keys, document them, layer configs.

``config/schema.yaml`` is the single source of truth; ``config/README.md``
holds the table :func:`markdown_table` makes from it (a test keeps the two in
step).

A run's configuration is made of layers, each over the ones before it
(:func:`config_layers`, :func:`layered`): the schema's defaults, then the
workflow's own ``config/config.yaml`` (found beside the Snakefile, never in the
working directory), then the ``--configfile`` files in the order given, then
``--config`` values.  A nested section is merged key by key, as Snakemake does.
"""

from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"
README = SCHEMA.with_name("README.md")
WORKFLOW_CONFIG = SCHEMA.with_name("config.yaml")
"""The workflow's own configuration (the demo): the layer under every ``--configfile``."""
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


def merge(base, over):
    """``over`` merged into a copy of ``base``, dicts key by key (Snakemake's ``update_config``).

    Examples
    --------
    >>> merge({"train": {"lr": 0.1, "iterations": 5}}, {"train": {"lr": 0.01}})
    {'train': {'lr': 0.01, 'iterations': 5}}
    """
    out = dict(base)
    for key, value in (over or {}).items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def config_layers(configfiles=(), overrides=None, workflow_config=WORKFLOW_CONFIG):
    """The layers of a run's configuration, lowest first, as ``(source, values)`` pairs.

    Parameters
    ----------
    configfiles : sequence of str or Path
        The ``--configfile`` files, in the order given.
    overrides : dict, optional
        The ``--config`` values.
    workflow_config : str or Path
        The workflow's ``config/config.yaml``.

    Returns
    -------
    list of (str, dict)
        The workflow config, each config file, then ``"--config"``; the schema's
        defaults lie under all of them (:func:`layered`).
    """
    layers = []
    for path in [workflow_config, *configfiles]:
        with open(path) as fh:
            layers.append((str(path), yaml.safe_load(fh) or {}))
    if overrides:
        layers.append(("--config", dict(overrides)))
    return layers


def layered(layers, schema=None):
    """The effective configuration: the schema's defaults, then each layer over the ones before.

    Examples
    --------
    >>> cfg = layered([("a.yaml", {"train": {"lr": 0.1}}), ("--config", {"seed": 3})])
    >>> cfg["train"]["lr"], cfg["train"]["momentum"], cfg["seed"]
    (0.1, 0.99, 3)
    """
    schema = schema or load_schema()
    out = {section: defaults(section, schema) for section in schema["properties"]}
    for _, values in layers:
        out = merge(out, values)
    return out


def source_of(key, layers):
    """Which layer sets the dotted ``key`` last (the one in effect), or the schema default.

    Examples
    --------
    >>> source_of("train.lr", [("a.yaml", {"train": {"lr": 0.1}}), ("b.yaml", {"seed": 1})])
    'a.yaml'
    >>> source_of("train.lr", [])
    'the default in config/schema.yaml'
    """
    found = "the default in config/schema.yaml"
    for source, values in layers:
        node = values
        for part in key.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is not KeyError:
            found = source
    return found


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


def member_train_config(config, member=False):
    """The train section one network or ensemble member trains with: without ``ensemble``, ``tune.tta`` resolved.

    Without ``ensemble``, how many networks there are is not part of
    training one: adding members neither invalidates their checkpoints
    (the fingerprint) nor re-runs them (a Snakemake params change).
    ``train.tune.tta`` left null becomes ``predict.tta``, so that the
    post-processing is searched on maps made as predict makes them;
    changing it re-runs training, which resumes its finished checkpoint and
    only searches again (``tune`` is not in the fingerprint).

    Parameters
    ----------
    config : dict
        The workflow config (defaults filled or not).
    member : bool
        For a member of an ensemble (``train.ensemble > 1``): no copies and
        no 8-pass maps, so that its delivered weights keep the
        post-processing of their own single-pass validation.  The join
        searches again for the members' mean, which predict uses, so a
        member's search on copies and 8-pass maps would be discarded.

    Returns
    -------
    dict
        A copy of ``config["train"]``; the config is left unchanged.
    """
    train = {k: v for k, v in config["train"].items() if k != "ensemble"}
    tune = train.get("tune") or {}
    if member and config["train"].get("ensemble", 1) > 1:
        train["tune"] = {**tune, "copies": 0, "tta": False}
    elif tune.get("tta") is None:
        train["tune"] = {**tune, "tta": bool((config.get("predict") or {}).get("tta", False))}
    return train


if __name__ == "__main__":
    update_readme()
