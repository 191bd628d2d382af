"""The command line: every command in the table answers --help with its usage and success, and the
demo serves its dashboard only to a person at a terminal."""

from __future__ import annotations

import pytest

from cli.demo import should_serve
from cli.main import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_answers_help(command, capsys):
    try:
        code = main([command, "--help"])
    except SystemExit as exit_:  # argparse's own --help
        code = exit_.code
    assert code in (0, None), f"`phq {command} --help` exited {code}"
    assert "usage" in capsys.readouterr().out.lower()


def test_the_demo_serves_only_in_a_terminal_and_not_with_no_serve():
    assert should_serve(no_serve=False, stdin_is_terminal=True)
    assert not should_serve(no_serve=True, stdin_is_terminal=True)
    assert not should_serve(no_serve=False, stdin_is_terminal=False), "CI and pipes: the demo ends by itself"
