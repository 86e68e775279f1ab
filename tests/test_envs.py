"""Every third-party import of tileunet/ and scripts/ is provided by pyproject and by the conda envs."""

import ast
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# import name -> (PyPI name, conda-forge names that provide it)
PROVIDERS = {
    "numpy": ("numpy", {"numpy"}),
    "scipy": ("scipy", {"scipy"}),
    "numba": ("numba", {"numba"}),
    "zarr": ("zarr", {"zarr"}),
    "dask": ("dask", {"dask", "dask-core"}),
    "distributed": ("distributed", {"distributed"}),
    "tifffile": ("tifffile", {"tifffile"}),
    "skimage": ("scikit-image", {"scikit-image"}),
    "ome_zarr": ("ome-zarr", {"ome-zarr"}),
    "matplotlib": ("matplotlib", {"matplotlib", "matplotlib-base"}),
    "tqdm": ("tqdm", {"tqdm"}),
    "torch": ("torch", {"pytorch", "pytorch-gpu", "pytorch-cpu"}),
    "yaml": ("pyyaml", {"pyyaml"}),
    "snakemake": ("snakemake", {"snakemake", "snakemake-minimal"}),
}
# modules the Snakemake runtime provides to every job (the `snakemake` object, `snakemake.utils`)
PROVIDED_BY_RUNNER = {"snakemake"}


def third_party_imports(paths):
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "tileunet"}


def code_files():
    return sorted((ROOT / "tileunet").rglob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))


def env_packages(path):
    deps = yaml.safe_load(path.read_text())["dependencies"]
    return {d.split("=")[0].split("<")[0].split(">")[0].strip() for d in deps if isinstance(d, str)}


def test_every_import_is_known():
    unknown = third_party_imports(code_files()) - PROVIDERS.keys()
    assert not unknown, f"add {unknown} to PROVIDERS, pyproject.toml and envs/*.yaml"


def test_pyproject_provides_every_import():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower() for d in deps}
    missing = {PROVIDERS[i][0] for i in third_party_imports(code_files())} - names
    assert not missing, f"pyproject.toml lacks {missing}"


@pytest.mark.parametrize("env", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_conda_env_provides_every_import(env):
    spec = yaml.safe_load(env.read_text())
    assert spec["channels"] == ["conda-forge", "nodefaults"]
    have = env_packages(env)
    unpinned = [d for d in spec["dependencies"] if isinstance(d, str) and "=" not in d]
    assert not unpinned, f"{env.name}: pin {unpinned}"
    missing = [i for i in third_party_imports(code_files()) - PROVIDED_BY_RUNNER if not PROVIDERS[i][1] & have]
    assert not missing, f"{env.name} lacks packages for imports {missing}"


def test_rules_use_existing_envs():
    for rule_file in (ROOT / "rules").glob("*.smk"):
        for line in rule_file.read_text().splitlines():
            if line.strip().startswith('"../envs/'):
                assert (ROOT / "rules" / line.strip().strip('"')).resolve().exists(), line
