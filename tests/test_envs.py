"""The conda story: every rule's environment follows the configured device and provides its script's imports.

conda-forge is not reachable from the project's machines, so nothing here solves an
environment.  What is checked instead: which env file each rule gets for each device
setting (read from the parsed workflow), that each rule's env provides every third-party
import its script reaches (through tileunet's own modules), that the CUDA env pairs
pytorch with a cuda-version conda-forge built it for, and that
``snakemake --use-conda -n`` plans the demo with the envs a laptop can create.
"""

import ast
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from functools import lru_cache
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
    "jsonschema": ("jsonschema", {"jsonschema"}),  # tileunet.preflight: run by Snakemake itself, never in a job
    "snakemake": ("snakemake", {"snakemake", "snakemake-minimal"}),
}
# modules the Snakemake runtime provides to every job (the `snakemake` object, `snakemake.utils`)
PROVIDED_BY_RUNNER = {"snakemake"}
ENVS = {"cpu": "tileunet-cpu.yaml", "cuda": "tileunet-cuda.yaml", "auto": "tileunet.yaml"}

# conda-forge's pytorch CUDA builds: pytorch version -> the cuda_compiler_version values of
# its .ci_support/linux_64_*.yaml configs, i.e. the CUDA versions builds exist for.
# Source: github.com/conda-forge/pytorch-cpu-feedstock, the history of recipe/meta.yaml and
# .ci_support/ (checked 2026-12-02 at commit 74dd3d46, version 2.13.0). A build's CUDA
# libraries need cuda-version >= its CUDA within the major version, so an env pins a
# cuda-version that is one of these.
PYTORCH_CUDA_BUILDS = {
    "2.5": {"11.8", "12.0", "12.6"},
    "2.6": {"12.6"},
    "2.7": {"12.6", "12.9"},  # 2.7.1 was rebuilt for 12.9: the last 12.6 builds
    "2.8": {"12.9"},
    "2.9": {"12.9"},
    "2.10": {"12.9", "13.0"},
    "2.11": {"12.9", "13.0"},
    "2.12": {"12.9", "13.0"},
    "2.13": {"12.9", "13.0"},
}


def third_party_imports(paths):
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "tileunet"}


def _tileunet_modules(path):
    """tileunet module files that ``path`` imports directly (absolute or relative imports)."""
    out = set()
    package = ROOT / "tileunet"
    here = path.parent if path.is_relative_to(package) else package
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here
                for _ in range(node.level - 1):
                    base = base.parent
            elif node.module and node.module.split(".")[0] == "tileunet":
                base = ROOT
            else:
                continue
            parts = node.module.split(".") if node.module else []
            target = base.joinpath(*parts)
            candidates = [target.with_suffix(".py"), target / "__init__.py"]
            candidates += [target / f"{a.name}.py" for a in node.names]  # from . import io
            out |= {c for c in candidates if c.exists()}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "tileunet":
                    target = ROOT.joinpath(*a.name.split("."))
                    out |= {c for c in (target.with_suffix(".py"), target / "__init__.py") if c.exists()}
    return out


@lru_cache(maxsize=None)
def reached_files(script):
    """The script and every tileunet module it reaches, transitively (a frozenset of paths)."""
    todo, seen = [Path(script)], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += sorted(_tileunet_modules(path) - seen)
    return frozenset(seen)


@lru_cache(maxsize=None)
def script_imports(script):
    """Third-party imports a rule's script needs at run time, through tileunet's modules."""
    return frozenset(third_party_imports(reached_files(script)) - PROVIDED_BY_RUNNER)


def code_files():
    return sorted((ROOT / "tileunet").rglob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))


def env_packages(path):
    deps = yaml.safe_load(path.read_text())["dependencies"]
    return {d.split("=")[0].split("<")[0].split(">")[0].strip() for d in deps if isinstance(d, str)}


def env_pins(path):
    deps = yaml.safe_load(path.read_text())["dependencies"]
    return {d.split("=")[0].strip(): d.split("=", 1)[1].strip() for d in deps if isinstance(d, str) and "=" in d}


@lru_cache(maxsize=None)
def workflow_rules(train_device, predict_device, parts):
    """{rule: (env file name or None, script path or None)} of the parsed workflow for a config.

    Reads Snakemake's parsed rules (``_workflow`` of its Python API: no public accessor gives
    a rule's conda env), with config/ci.yaml and the demo's sample table.
    """
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, ResourceSettings

    config = {"samples": str(ROOT / "config/samples.tsv"), "train": {"device": train_device},
              "predict": {"device": predict_device, "parts": parts}}
    with tempfile.TemporaryDirectory() as work, SnakemakeApi() as api:
        wf = api.workflow(resource_settings=ResourceSettings(), snakefile=ROOT / "Snakefile", workdir=Path(work),
                          config_settings=ConfigSettings(configfiles=[ROOT / "config/ci.yaml"], config=config))
        rules = {}
        for rule in wf._workflow.rules:
            env = Path(rule.conda_env).name if rule.conda_env else None
            script = (ROOT / "rules" / rule.script).resolve() if rule.script else None
            rules[rule.name] = (env, script)
        return rules


DEVICE_CASES = [(t, p, parts) for t in ("cpu", "cuda", "auto", "mps") for p in ("cpu", "cuda", "auto")
                for parts in (1, 3) if (t, p) in {("cpu", "cpu"), ("cuda", "cuda"), ("auto", "auto"), ("mps", "auto"),
                                                   ("cuda", "cpu"), ("cpu", "auto")}]


def expected_env(rule, train_device, predict_device):
    """The env a rule must get: train/predict jobs follow their device, everything else is CPU."""
    base = rule.split("_", 2)[-1] if rule.startswith("ablation_") else rule
    for stage_rule, device in (("train_model", train_device), ("train_member", train_device),
                               ("predict_sample", predict_device),
                               ("predict_part", predict_device)):
        if base.endswith(stage_rule):
            return ENVS["auto" if device == "mps" else device]
    return ENVS["cpu"]


def test_every_import_is_known():
    unknown = third_party_imports(code_files()) - PROVIDERS.keys()
    assert not unknown, f"add {unknown} to PROVIDERS, pyproject.toml and envs/*.yaml"


def test_pyproject_provides_every_import():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower() for d in deps}
    missing = {PROVIDERS[i][0] for i in third_party_imports(code_files())} - names
    assert not missing, f"pyproject.toml lacks {missing}"


@pytest.mark.parametrize("env", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_conda_env_is_pinned_conda_forge_and_says_how_it_was_checked(env):
    spec = yaml.safe_load(env.read_text())
    assert spec["channels"] == ["conda-forge", "nodefaults"]
    unpinned = [d for d in spec["dependencies"] if isinstance(d, str) and "=" not in d]
    assert not unpinned, f"{env.name}: pin {unpinned}"
    assert "How the pins were checked" in env.read_text(), f"{env.name}: say how its pins were checked"
    assert sorted(p.name for p in (ROOT / "envs").glob("*.yaml")) == sorted(ENVS.values())


@pytest.mark.parametrize("train_device, predict_device, parts", DEVICE_CASES)
def test_each_rule_gets_the_env_of_its_device(train_device, predict_device, parts):
    rules = workflow_rules(train_device, predict_device, parts)
    jobs = {name: env for name, (env, script) in rules.items() if script}
    assert {"train_model", "train_member", "ingest_sample", "evaluate_test"} <= jobs.keys()  # ci.yaml trains 2 members
    assert ("predict_part" in jobs) == (parts > 1) and ("predict_gather" in jobs) == (parts > 1)
    for name, (env, script) in rules.items():
        if script is None:
            assert env is None, f"{name}: a rule without a script needs no env"
            continue
        assert env == expected_env(name, train_device, predict_device), (name, env)


@pytest.mark.parametrize("train_device, predict_device", [("cpu", "cpu"), ("auto", "auto"), ("mps", "auto")])
def test_no_rule_needs_the_cuda_env_unless_cuda_is_configured(train_device, predict_device):
    for parts in (1, 3):
        envs = {env for env, _ in workflow_rules(train_device, predict_device, parts).values()}
        assert ENVS["cuda"] not in envs
        assert "pytorch-gpu" not in set().union(*(env_packages(ROOT / "envs" / e) for e in envs if e))


def test_every_import_of_each_rules_script_is_in_that_rules_env():
    checked = 0
    for case in DEVICE_CASES:
        for name, (env, script) in workflow_rules(*case).items():
            if script is None:
                continue
            have = env_packages(ROOT / "envs" / env)
            needs = script_imports(script)
            missing = sorted(i for i in needs if not PROVIDERS[i][1] & have)
            assert not missing, f"rule {name} ({script.name}) runs in {env}, which lacks {missing}"
            checked += 1
    assert checked > 50


def test_import_check_sees_through_tileunet_modules():
    """A canary for the check above: train.py's torch comes from tileunet.train, not the script alone."""
    files = reached_files(ROOT / "scripts/train.py")
    assert ROOT / "tileunet/train.py" in files and ROOT / "tileunet/model.py" in files
    assert "torch" in third_party_imports(files) and "torch" not in third_party_imports([ROOT / "scripts/train.py"])


def test_cuda_env_pairs_pytorch_with_a_cuda_version_it_was_built_for():
    pins = env_pins(ROOT / "envs" / ENVS["cuda"])
    torch, cuda = pins["pytorch-gpu"], pins["cuda-version"]
    assert torch in PYTORCH_CUDA_BUILDS, f"add pytorch {torch} to PYTORCH_CUDA_BUILDS from the feedstock first"
    assert cuda in PYTORCH_CUDA_BUILDS[torch], (
        f"conda-forge builds pytorch {torch} for CUDA {sorted(PYTORCH_CUDA_BUILDS[torch])}, not {cuda}")
    # every env takes the same pytorch release and shares the rest of its pins
    versions = {e: env_pins(ROOT / "envs" / f) for e, f in ENVS.items()}
    torches = {e: next(v for k, v in p.items() if k.startswith("pytorch")) for e, p in versions.items()}
    assert len(set(torches.values())) == 1, torches
    rest = [{k: v for k, v in p.items() if not k.startswith(("pytorch", "cuda"))} for p in versions.values()]
    assert all(r == rest[0] for r in rest), rest
    assert {next(k for k in p if k.startswith("pytorch")) for p in versions.values()} == {
        "pytorch-cpu", "pytorch", "pytorch-gpu"}


def test_pytorch_cuda_table_rejects_the_old_pin():
    """The table is what caught envs/tileunet-cuda.yaml's cuda-version 12.6 beside pytorch 2.13."""
    assert "12.6" not in PYTORCH_CUDA_BUILDS["2.13"] and "12.6" in PYTORCH_CUDA_BUILDS["2.7"]


def _conda_for_dry_runs(folder):
    """PATH with a `conda`: the real one if installed, else a stand-in for the three queries Snakemake makes.

    Snakemake's dry run with --use-conda asks `conda info --json` (platform, prefix),
    `conda --version` and `conda config --get channel_priority --json`, then plans which
    environments it would create without calling conda again.  conda is on neither PyPI nor
    Debian, so where it is missing this stand-in answers those three, like a conda 25.x on
    linux-64 would, and fails any other command: nothing can be created or solved with it.
    """
    if shutil.which("conda"):
        return os.environ["PATH"]
    stub = folder / "conda"
    info = {"platform": "linux-64", "conda_prefix": str(folder / "conda-prefix"), "conda_version": "25.7.0"}
    stub.write_text(f"""#!{sys.executable}
import json, sys
args = sys.argv[1:]
if args == ["info", "--json"]:
    print(json.dumps({info!r}))
elif args == ["--version"]:
    print("conda 25.7.0")
elif args[:3] == ["config", "--get", "channel_priority"]:
    print(json.dumps({{"get": {{"channel_priority": "strict"}}, "rc_path": "", "success": True, "warnings": []}}))
else:
    sys.exit("stand-in conda (tests/test_envs.py) answers Snakemake's dry-run queries only: " + " ".join(args))
""")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return os.pathsep.join([str(folder), os.environ["PATH"]])


@pytest.mark.parametrize("device, envs", [
    ("auto", {ENVS["cpu"], ENVS["auto"]}),  # the demo as shipped: a laptop, a workstation, a login node
    ("cpu", {ENVS["cpu"]}),
    ("cuda", {ENVS["cpu"], ENVS["cuda"]}),
])
def test_use_conda_dry_run_plans_the_demo_with_the_envs_of_its_device(tmp_path, device, envs):
    override = tmp_path / "device.yaml"
    override.write_text(yaml.safe_dump({"train": {"device": device}, "predict": {"device": device}}))
    env = {**os.environ, "PATH": _conda_for_dry_runs(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--use-conda", "--cores", "8", "--forceall",
                           "--configfile", str(ROOT / "config/config.yaml"), str(override),
                           "--conda-prefix", str(tmp_path / "envs")],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    planned = {line.split("Conda environment ")[1].split(" will be created")[0].split("/")[-1]
               for line in out.splitlines() if "will be created" in line}
    assert planned == envs, out[-3000:]
    for rule in ("demo_data", "ingest_sample", "train_model", "predict_sample", "evaluate_test"):
        assert f"rule {rule}:" in out or rule in out
