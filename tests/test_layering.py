"""Imports run one way (DESIGN §2): nothing below imports anything above it."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Lower number = higher layer. A module may import its own layer or lower (higher number).
LAYER = {"config": 0, "console": 1, "agentapi": 1, "archives": 2, "keystore": 2, "activity": 2,
         "accounts": 3, "formats": 3}
PLAIN_PACKAGES = {"formats", "agent"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str):
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(set(LAYER) - {"config"}))
def test_it_imports_no_higher_layer(package):
    offenders = []
    for path in _modules(package):
        for name in _imports(path):
            if name in LAYER and LAYER[name] < LAYER[package]:
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
            if name == "agent":
                offenders.append(f"{path.relative_to(REPO)} imports the agent")
    assert not offenders, offenders


@pytest.mark.parametrize("package", sorted(PLAIN_PACKAGES))
def test_plain_packages_import_nothing_of_django_or_the_server(package):
    server = set(LAYER) - {"formats"}
    offenders = [f"{path.relative_to(REPO)} imports {name}" for path in _modules(package)
                 for name in _imports(path) if name in {"django", "rest_framework", "celery"} | server]
    assert not offenders, offenders


def test_the_checker_catches_an_upward_import(tmp_path):
    """The rule above must be able to fail: an accounts module importing console is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("from console.views import dashboard\nimport django\n")
    assert {"console", "django"} <= _imports(bad)
