"""The agent is its own distribution: `pip install .` gives `haven-agent` without the server."""
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    # Build from a copy: an in-tree build leaves build/ and *.egg-info in the checkout.
    for name in ("agent", "formats"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(source)], check=True, capture_output=True)
    (wheel,) = out.glob("haven_agent-*.whl")
    return wheel


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            requirement = Requirement(line)
            pins[requirement.name.lower()] = Version(next(iter(requirement.specifier)).version)
    return pins


def test_the_wheel_holds_the_agent_and_formats_only(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top = {name.split("/")[0] for name in names}
        metadata = Parser().parsestr(archive.read(next(n for n in names if n.endswith("/METADATA"))).decode())
        entry_points = archive.read(next(n for n in names if n.endswith("/entry_points.txt"))).decode()
    assert {t for t in top if not t.endswith(".dist-info")} == {"agent", "formats"}
    assert "agent/cli.py" in names and "formats/blocks.py" in names
    assert "haven-agent = agent.cli:main" in entry_points
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist")]
    assert not [r for r in requirements if r.name.lower() in {"django", "djangorestframework", "celery", "hvac"}]


def test_the_servers_pinned_versions_satisfy_the_agents_ranges(tmp_path):
    """The suite runs the agent with requirements.txt's pins: they must be versions the
    distribution admits, or endpoints would run something never tested."""
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith("/METADATA"))
        requirements = [Requirement(r) for r in Parser().parsestr(archive.read(meta).decode()).get_all("Requires-Dist")]
    pins = _pins()
    for requirement in requirements:
        pinned = pins.get(requirement.name.lower())
        assert pinned is not None, f"{requirement.name} is not pinned in requirements.txt"
        assert requirement.specifier.contains(pinned), f"{requirement.name}=={pinned} is outside {requirement}"


def test_every_library_the_agent_imports_is_a_dependency(tmp_path):
    """An import the distribution does not declare works in this venv and fails on an endpoint."""
    import ast
    from importlib.metadata import packages_distributions

    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith("/METADATA"))
        declared = {Requirement(r).name.lower() for r in
                    Parser().parsestr(archive.read(meta).decode()).get_all("Requires-Dist")}
    distributions = packages_distributions()
    imported = set()
    for path in [*(ROOT / "agent").rglob("*.py"), *(ROOT / "formats").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported
                   if name not in sys.stdlib_module_names and name not in {"agent", "formats"}}
    needed = {dist.lower() for name in third_party for dist in distributions.get(name, [name])}
    assert needed <= declared, f"imported but not declared: {sorted(needed - declared)}"
