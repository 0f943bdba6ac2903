"""README.md's table of BOUNDARIES_* settings is generated from config.settings.Settings
(scripts/settings_table.py --write) and must stay in step with it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from config.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("settings_table", REPO / "scripts" / "settings_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_table_is_the_generated_one():
    st = _script()
    readme = (REPO / "README.md").read_text()

    assert st.replace_block(readme, st.render()) == readme, \
        "README.md settings table is out of step: run .venv/bin/python scripts/settings_table.py --write"


def test_every_setting_is_a_row_with_a_description():
    readme = (REPO / "README.md").read_text()
    missing = [n for n, f in Settings.model_fields.items() if not (f.description or "").strip()]

    assert not missing, f"settings without a docstring in config/settings.py: {missing}"
    for name in Settings.model_fields:
        assert f"| `BOUNDARIES_{name.upper()}` |" in readme, name


def test_a_block_without_markers_is_refused():
    with pytest.raises(ValueError, match="settings-table:start"):
        _script().replace_block("# README\n", "| x |\n")
