"""The command line: every command is reachable and documented; no command means usage, exit 2."""
import pytest

from timbrescribe.cli import COMMANDS, main


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    for words, _, help_text in COMMANDS:
        assert words[0] in printed
    assert "examples:" in printed


@pytest.mark.parametrize("words", [words for words, _, _ in COMMANDS], ids=" ".join)
def test_each_command_has_help(words, capsys):
    with pytest.raises(SystemExit) as done:
        main([*words, "--help"])
    assert done.value.code == 0
    assert f"usage: timbrescribe {' '.join(words)}" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["data"], ["train"]])
def test_missing_command_prints_usage_and_fails(argv, capsys):
    assert main(argv) == 2
    assert "usage: timbrescribe" in capsys.readouterr().out


def test_unknown_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as done:
        main(["transcrib"])
    assert done.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
