"""Imports run one way (DESIGN §2): nothing below imports anything above it.

`layering_violations` checks a whole source tree: the real repository must pass, and a copy of it
with one upward import planted must fail — so the check is known to catch what it is named for.
"""
import ast
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Lower number = higher layer. A module may import its own layer or lower (higher number).
LAYER = {"config": 0, "console": 1, "agentapi": 1, "archives": 2, "keystore": 2, "activity": 2,
         "accounts": 3, "formats": 3}
# The agent and the formats import nothing of Django or of the server (the agent only formats/).
PLAIN_PACKAGES = {"formats", "agent"}
NOT_PLAIN = {"django", "rest_framework", "celery", "djangosaml2", "django_scim"} | (set(LAYER) - {"formats"})
# Top-level directories holding Python that are outside the layering (they may import anything).
UNLAYERED = {"tests", "bench"}


def _module_imports(path: Path, root: Path) -> set[str]:
    """Top-level names a module imports: plain, from-, relative (resolved), in functions, and
    importlib.import_module / __import__ with a literal name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = list(path.relative_to(root).parent.parts)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):  # relative: it resolves inside the module's own top package
            names.add(package[0] if node.level - 1 < len(package) else "<beyond the top package>")
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in {"import_module", "__import__"}):
            names.add(node.args[0].value.split(".")[0])
    return names


def _python_files(root: Path, package: str) -> list[Path]:
    return sorted(path for path in (root / package).rglob("*.py") if ".venv" not in path.parts)


def layering_violations(root: Path) -> list[str]:
    """Every import in the tree under `root` that breaks DESIGN §2, as "file imports name"."""
    problems = []
    for package in sorted(set(LAYER) | PLAIN_PACKAGES):
        for path in _python_files(root, package):
            where = path.relative_to(root)
            for name in sorted(_module_imports(path, root)):
                if package in LAYER and name in LAYER and LAYER[name] < LAYER[package]:
                    problems.append(f"{where} imports {name}, a higher layer")
                if package != "agent" and name == "agent":
                    problems.append(f"{where} imports the agent")
                if package in PLAIN_PACKAGES and name in NOT_PLAIN:
                    problems.append(f"{where} imports {name}, which a plain package must not")
    return problems


def test_the_real_tree_keeps_the_layering():
    assert layering_violations(REPO) == []


def test_every_top_level_package_is_placed_in_the_layering():
    """A new app left out of LAYER would be checked against nothing."""
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")}
    packages |= {path.parent.name for path in REPO.glob("*/*.py") if not path.parent.name.startswith(".")}
    assert packages - set(LAYER) - PLAIN_PACKAGES - UNLAYERED == set()


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    for package in sorted(set(LAYER) | PLAIN_PACKAGES):
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture
def tree(clean_copy):
    """A copy of the repository's layered packages to plant bad imports in; planted files are removed after."""
    before = set(clean_copy.rglob("*"))
    assert layering_violations(clean_copy) == []  # the copy is as clean as the original
    yield clean_copy
    for path in sorted(set(clean_copy.rglob("*")) - before, reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("accounts/sneaky.py", "from console.views import dashboard\n", "accounts/sneaky.py imports console"),
    ("accounts/models_extra.py", "def later():\n    import archives.services\n",
     "accounts/models_extra.py imports archives"),
    ("archives/lazy.py", "import importlib\nimportlib.import_module('agentapi.apis')\n", "archives/lazy.py imports agentapi"),
    ("keystore/up.py", "import config.settings\n", "keystore/up.py imports config"),
    ("formats/leak.py", "from archives.models import Pack\n", "formats/leak.py imports archives"),
    ("agent/server.py", "from django.conf import settings\n", "agent/server.py imports django"),
    ("accounts/uses_agent.py", "from agent.backup import scan\n", "accounts/uses_agent.py imports the agent"),
])
def test_an_upward_import_planted_in_a_copy_of_the_tree_is_reported(tree, module, source, expected):
    (tree / module).write_text(source)
    problems = layering_violations(tree)
    assert problems and all(problem.startswith(expected) for problem in problems), problems


def test_a_relative_import_is_resolved_not_skipped(tree):
    (tree / "accounts" / "sub").mkdir()
    (tree / "accounts" / "sub" / "__init__.py").write_text("")
    (tree / "accounts" / "sub" / "ok.py").write_text("from .. import services\nfrom ..models import User\n")
    assert layering_violations(tree) == []  # relative imports inside one package stay in it
