"""The schema is the single source of truth: complete, documented, and the shipped configs pass it."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from tileunet.config import SCHEMA, iter_keys, load_schema, markdown_table

ROOT = Path(__file__).resolve().parent.parent


def merged(*names):
    config = {}
    for name in names:
        for key, value in yaml.safe_load((ROOT / "config" / name).read_text()).items():
            config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def test_every_key_has_a_description_and_a_default():
    for key, sub in iter_keys(load_schema()):
        assert sub.get("description"), f"{key} has no description"
        assert "default" in sub, f"{key} has no default"
        if sub.get("type") == "object":
            assert sub.get("additionalProperties") is False, f"{key} accepts unknown keys"


@pytest.mark.parametrize("names", [("config.yaml",), ("ci.yaml",), ("config.yaml", "paper.yaml")])
def test_shipped_configs_are_valid(names):
    validate(merged(*names), str(SCHEMA))


def test_defaults_fill_a_minimal_config():
    config = {}
    validate(config, str(SCHEMA))
    assert config["weights"]["w0"] == 10.0 and config["model"]["depth"] == 5
    assert config["train"]["momentum"] == 0.99 and config["train"]["batch_size"] == 1


def test_paper_config_holds_the_papers_settings():
    c = merged("config.yaml", "paper.yaml")
    assert (c["model"]["base_channels"], c["model"]["depth"], c["train"]["tile_size"]) == (64, 5, 572)
    assert (c["train"]["optimizer"], c["train"]["momentum"], c["train"]["batch_size"]) == ("sgd", 0.99, 1)
    assert c["predict"]["tile"] == 388


def test_readme_documents_every_key():
    readme = (ROOT / "config" / "README.md").read_text()
    assert markdown_table(load_schema()) in readme, (
        "config/README.md is out of date: run `python -m tileunet.config`")


def test_unknown_and_out_of_range_values_are_refused():
    for bad in ({"bogus": 1}, {"weights": {"sigma": 0}}, {"train": {"optimiser": "sgd"}}, {"augment": {"flip_p": 2}}):
        with pytest.raises(Exception):
            validate(copy.deepcopy(bad), str(SCHEMA))
