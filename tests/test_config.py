"""The schema is the single source of truth: complete, documented, and the shipped configs pass it."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from tileunet.config import (SCHEMA, WORKFLOW_CONFIG, config_layers, iter_keys, layered, load_schema,
                             markdown_table, member_train_config, merge, source_of)

ROOT = Path(__file__).resolve().parent.parent


def merged(*names):
    """The shipped config files layered as the workflow does, without the schema's defaults."""
    config = {}
    for name in names:
        config = merge(config, yaml.safe_load((ROOT / "config" / name).read_text()))
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


ABLATION = yaml.safe_load((ROOT / "config/ablation.yaml").read_text())


@pytest.mark.parametrize("variant", sorted(ABLATION))
def test_ablation_variants_are_valid_overlays_of_the_demo_config(variant):
    overlay = ABLATION[variant]
    demo = merged("config.yaml")
    assert overlay and set(overlay) <= set(demo), f"{variant} changes nothing, or a section the demo lacks"
    validate(demo, str(SCHEMA))  # fills the schema's defaults: the demo as it runs
    changed = merge(demo, overlay)
    validate(changed, str(SCHEMA))
    assert changed != demo, f"{variant} repeats the demo config"


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


def test_layers_apply_in_order_defaults_workflow_files_then_config(tmp_path):
    """Schema defaults < the workflow's config/config.yaml < each --configfile in order < --config."""
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("train: {lr: 0.5, iterations: 7}\npredict: {tile: 100}\n")
    second.write_text("train: {lr: 0.25}\n")
    layers = config_layers([first, second], {"seed": 9})
    assert [name for name, _ in layers] == [str(WORKFLOW_CONFIG), str(first), str(second), "--config"]
    cfg = layered(layers)
    demo = yaml.safe_load(WORKFLOW_CONFIG.read_text())
    assert cfg["train"]["lr"] == 0.25 and cfg["train"]["iterations"] == 7 and cfg["seed"] == 9  # files, --config
    assert cfg["train"]["tile_size"] == demo["train"]["tile_size"] != 572  # the workflow's config, not the default
    assert cfg["train"]["momentum"] == 0.99 and cfg["weights"]["tol"] == 1e-4  # the schema's defaults
    assert cfg["train"]["tune"]["seed_erosions"] == [0, 1, 2, 4]  # nested sections merge key by key
    assert source_of("train.lr", layers) == str(second) and source_of("train.iterations", layers) == str(first)
    assert source_of("train.tile_size", layers) == str(WORKFLOW_CONFIG)
    assert source_of("train.momentum", layers) == "the default in config/schema.yaml"
    assert source_of("seed", layers) == "--config"


def test_ci_config_is_complete_so_the_demo_config_does_not_leak_into_it():
    """ci.yaml over the workflow's config/config.yaml is the same run as ci.yaml over the defaults alone."""
    ci = ROOT / "config" / "ci.yaml"
    over_demo = layered(config_layers([ci]))
    alone = layered([(str(ci), yaml.safe_load(ci.read_text()))])
    assert over_demo == alone
    validate(copy.deepcopy(over_demo), str(SCHEMA))


@pytest.mark.parametrize("tune, predict_tta, expected", [({}, True, True), ({}, False, False),
                                                         ({"tta": False}, True, False), ({"tta": True}, False, True)])
def test_members_train_without_ensemble_and_search_on_maps_as_predict_makes_them(tune, predict_tta, expected):
    config = {"train": {"ensemble": 3, "lr": 0.1, "tune": {**tune, "copies": 2}}, "predict": {"tta": predict_tta}}
    before = copy.deepcopy(config)
    train = member_train_config(config)
    assert train == {"lr": 0.1, "tune": {"copies": 2, "tta": expected}} and config == before


@pytest.mark.parametrize("ensemble, expected", [(3, {"copies": 0, "tta": False}), (1, {"copies": 2, "tta": True})])
def test_ensemble_members_leave_the_copies_and_eight_pass_search_to_the_join(ensemble, expected):
    config = {"train": {"ensemble": ensemble, "tune": {"copies": 2}}, "predict": {"tta": True}}
    assert member_train_config(config, member=True)["tune"] == expected
    assert member_train_config(config)["tune"] == {"copies": 2, "tta": True}  # the join's
