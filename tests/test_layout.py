"""The README's layout section lists exactly the modules of tileunet/."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_layout_lists_every_module_and_no_other():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^  (\w+(?:\.py|/))", section.split("tileunet/\n", 1)[1], flags=re.M))
    package = ROOT / "tileunet"
    actual = {p.name for p in package.glob("*.py") if p.name != "__init__.py"}
    actual |= {p.name + "/" for p in package.iterdir() if (p / "__init__.py").exists()}
    assert listed == actual, f"README layout: missing {sorted(actual - listed)}, stale {sorted(listed - actual)}"
    for folder in ("rules", "scripts", "config", "envs", "profiles", "report", "benchmarks", "tests"):
        assert re.search(rf"^{folder}/ ", section, flags=re.M), folder
