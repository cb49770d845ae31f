"""Every command's --help: examples, flags shown as flags, a one-line summary."""

import pytest
import typer
from typer.testing import CliRunner

from dqnrun.cli import app

runner = CliRunner()
BUILT_IN = {"help", "install_completion", "show_completion"}  # typer's own options


def commands(group, path=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


ALL = list(commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path, command", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_help_has_examples_and_flags_render_as_flags(path, command):
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"dqnrun {' '.join(path)} --help has no examples"
    assert "dqnrun " + " ".join(path) in result.output
    lines = result.output.splitlines()
    for param in command.params:
        if getattr(param, "is_flag", False) and param.name not in BUILT_IN:
            (line,) = [line for line in lines if line.lstrip("│ ").startswith(param.opts[0] + " ")]
            assert "<bool>" not in line, f"{param.opts[0]} shows a value; give it metavar=\"\""
    paragraphs = (command.help or "").strip().split("\n\n")
    assert all("\n" not in p for p in paragraphs if not p.startswith(" ")), "help paragraphs must wrap"
    text = " ".join(result.output.split())
    assert paragraphs[0] in text  # the summary, wrapped by the terminal only


def test_the_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    for path, _ in ALL:
        assert path[0] in result.output


def test_extras_in_option_help_are_not_eaten_as_markup():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert 'pip install "dqnrun[dask]"' in result.output
