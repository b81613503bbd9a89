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
    for command in (
        "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/ctxgraph serve",
        "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest",
    ):
        assert f"\n{command}\n" in text
