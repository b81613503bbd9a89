"""Documentation that must match behaviour: every setting is documented."""

from __future__ import annotations

import pytest

from api.settings import Settings
from tests.dbutil import REPO


def _variables() -> list[str]:
    return [
        "DATABASE_URL" if name == "database_url" else f"CTXGRAPH_{name.upper()}"
        for name in Settings.model_fields
    ]


@pytest.mark.parametrize("document", ["README.md", ".env.example"])
def test_every_setting_is_documented(document: str) -> None:
    text = (REPO / document).read_text()
    assert [v for v in _variables() if v not in text] == []


def test_every_setting_has_a_description() -> None:
    assert [n for n, f in Settings.model_fields.items() if not f.description] == []


def test_readme_quick_start_commands_are_verbatim() -> None:
    text = (REPO / "README.md").read_text()
    install = "python3 -m venv .venv && .venv/bin/pip install -c requirements.lock -e '.[dev]'"
    for command in (f"{install} && .venv/bin/ctxgraph serve", f"{install} && .venv/bin/pytest"):
        assert f"\n{command}\n" in text
    # CI runs the README's test command, verbatim
    assert f"\n{command}\n" in (REPO / ".ci" / "run").read_text() or "serve" in command


def test_the_lock_file_pins_what_pyproject_asks_for() -> None:
    """requirements.lock (README: how to refresh it) holds every dependency of the
    project and its dev and bench extras, at versions their ranges allow."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [
        *project["dependencies"],
        *project["optional-dependencies"]["dev"],
        *project["optional-dependencies"]["bench"],
    ]
    pinned: dict[str, str] = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.partition("==")
            pinned[canonicalize_name(name)] = version.strip()
    problems = []
    for text in wanted:
        requirement = Requirement(text)
        locked = pinned.get(canonicalize_name(requirement.name))
        if locked is None or not requirement.specifier.contains(locked, prereleases=True):
            problems.append(f"{text}: locked {locked}")
    assert problems == [], "refresh requirements.lock (README, Quick start)"
