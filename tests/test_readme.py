"""The README is part of the product: its two commands, and every setting with its default."""

import re
from pathlib import Path

from phq.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_first_code_block_holds_exactly_the_demo_and_test_commands():
    block = re.search(r"```\n(.*?)```", README, re.S).group(1)
    assert block.strip().splitlines() == ["./run.sh demo", "./run.sh test"]


def test_every_setting_is_documented():
    for name in Settings.model_fields:
        assert f"`PHQ_{name.upper()}`" in README, f"PHQ_{name.upper()} is missing from the README's settings table"


def test_readme_states_the_intended_use():
    assert "not a diagnosis" in README and "not a crisis or suicide-risk detector" in README
