"""docs/threat-model.md names the test that proves each control: every name must exist, or the
document claims a proof that is gone."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _references() -> list[tuple[str, str | None]]:
    """(file, test) pairs; `::name` alone in a cell continues the file named before it."""
    text = (ROOT / "docs" / "threat-model.md").read_text()
    pairs, current = [], None
    for match in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?(?:\[[^\]]*\])?`", text):
        path, name = match.groups()
        if path:
            current = path
        if path or name:
            pairs.append((current, name))
    return pairs


def test_every_test_the_threat_model_names_exists():
    references = _references()
    assert len(references) > 50
    missing = []
    for path, name in references:
        assert path is not None, f"::{name} follows no file name"
        source = ROOT / path
        if not source.exists():
            missing.append(path)
        elif name and not re.search(rf"^\s*def {name}\(", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/threat-model.md names tests that do not exist: {missing}"


def test_every_actor_has_controls_with_tests():
    text = (ROOT / "docs" / "threat-model.md").read_text()
    for actor in ("T1", "T2", "T3", "T4", "T5", "T6", "T7"):
        section = text.split(f"### {actor} ")[1].split("### ")[0]
        assert "`tests/" in section, f"{actor} names no test"
