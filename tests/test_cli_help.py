"""Every command's --help: examples, flags shown as flags, a one-line summary."""

import pytest
import typer
from typer.testing import CliRunner

from dqnrun.cli import app

runner = CliRunner()


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
    assert "<bool>" not in result.output, "a flag shows a value: flags take none (--help included)"
    paragraphs = (command.help or "").strip().split("\n\n")
    assert all("\n" not in p for p in paragraphs if not p.startswith(" ")), "help paragraphs must wrap"
    text = " ".join(result.output.split())
    assert paragraphs[0] in text  # the summary, wrapped by the terminal only


def test_the_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    for path, _ in ALL:
        assert path[0] in result.output
    assert "--install-completion " in result.output and "<bool>" not in result.output


@pytest.mark.parametrize("args, problem", [
    (["train", "--bogus"], "train: No such option: --bogus"),
    (["watch"], "watch: Missing argument 'RUN'"),
    (["nosuch"], "No such command 'nosuch'"),
    (["train", "x.yaml", "--episodes", "abc"], "train: Invalid value for '--episodes'"),
    (["config", "show"], "config show: Missing argument 'CONFIG'"),
    (["config", "nosuch"], "config: No such command 'nosuch'"),
    (["compare", "--format"], "compare: Option '--format' requires an argument"),
    (["--bogus"], "No such option: --bogus"),
])
def test_a_usage_error_is_one_line_naming_the_problem_and_exit_2(args, problem):
    result = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()  # no usage line, no box
    assert line.startswith("error: ") and problem in line and line.endswith("--help`"), line


def test_no_arguments_still_print_the_help():
    for args in ([], ["config"]):
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert "Usage:" in result.output and "error" not in result.output


def test_extras_in_option_help_are_not_eaten_as_markup():
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert 'pip install "dqnrun[dask]"' in result.output
