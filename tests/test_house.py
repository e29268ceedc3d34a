"""The house rules that code review would otherwise have to remember."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("robopref", "envs", "policies", "hardware")
MAX_LINES = 500


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_over_500_lines(package):
    too_long = {
        str(path.relative_to(ROOT)): n
        for path in sorted((ROOT / package).rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not too_long, f"split these by job: {too_long}"


def test_every_declared_dependency_is_imported_somewhere():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    import_names = {
        "hydra-core": "hydra",
        "lerobot[dataset]": "lerobot",
        "pot": "ot",
        "tensorboard": "torch.utils.tensorboard",  # torch's writer needs the package
    }
    # Drivers SQLAlchemy loads by URL: used when the code names them in a URL.
    loaded_by_url = {"psycopg[binary]": "postgresql+psycopg://"}
    sources = "\n".join(
        p.read_text()
        for pkg in (*PACKAGES, "scripts", "benchmarks")
        for p in (ROOT / pkg).rglob("*.py")
    )
    unused = []
    for requirement in project["dependencies"]:
        name = requirement.split(">")[0].split("<")[0].split("=")[0].strip()
        if name in loaded_by_url:
            if loaded_by_url[name] not in sources:
                unused.append(name)
            continue
        module = import_names.get(name, name).replace("-", "_")
        if f"import {module}" not in sources and f"from {module}" not in sources:
            unused.append(name)
    assert not unused, f"declared and never imported (use or remove): {unused}"
