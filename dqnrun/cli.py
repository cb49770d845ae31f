"""The `dqnrun` command line (Typer): thin commands over the modules below."""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import typer
import typer.core

from dqnrun.errors import Fault, UserError

# Typer 0.29 (pinned in pyproject) runs on its own copy of click: its usage errors are that
# copy's classes, not the click package's.
from typer._click.exceptions import NoArgsIsHelpError, UsageError


def _flags_without_metavar(params: list[Any]) -> list[Any]:
    """Flags (--force, and click's and Typer's own --help, --install-completion) take no value:
    their help shows none, instead of Typer's `<bool>`."""
    for param in params:
        if isinstance(param, typer.core.TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    return params


def _usage_error(exc: Any, command: str) -> None:
    """A click usage error (an unknown option or command, a missing argument, a value of the
    wrong type) as one line and exit code 2, like every other user mistake, instead of Typer's
    boxed panel. `command`: the command path, where the error does not know it."""
    from dqnrun.console import error

    if isinstance(exc, NoArgsIsHelpError):
        raise exc  # `dqnrun` or `dqnrun config` alone: the help, as asked for
    command = exc.ctx.command_path if exc.ctx is not None else command
    problem = " ".join(exc.format_message().split()).rstrip(".")
    error(f"{command}: {problem}; see `{command} --help`")
    raise typer.Exit(EXIT_USER_ERROR) from None


class _OneLineUsageErrors:
    """Usage errors of a command's own options and arguments (raised while its context is made)
    and of the command names under a group (raised while it invokes them), in one line."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_without_metavar(super().get_params(ctx))  # type: ignore[misc]

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)  # type: ignore[misc]
        except UsageError as exc:
            _usage_error(exc, " ".join(filter(None, (parent.command_path if parent else "", info_name))))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except UsageError as exc:
            _usage_error(exc, ctx.command_path)


class _Command(_OneLineUsageErrors, typer.core.TyperCommand):
    pass


class _Group(_OneLineUsageErrors, typer.core.TyperGroup):
    pass


class _Program(typer.Typer):
    """The Typer app; run as a program, it ends as soon as an interrupted command has said so:
    every file is then written and closed, and the interpreter's own clean-up of torch,
    matplotlib and friends would add seconds on a busy machine. Once any other command has
    ended, Ctrl-C is ignored while the interpreter shuts down. (Tests call the command
    through click, not this.)"""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit as exc:
            if exc.code == EXIT_INTERRUPTED:
                import os
                import sys

                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(EXIT_INTERRUPTED)
            # The command has finished and said so: a Ctrl-C from here on would only break the
            # interpreter's shutdown (a traceback from an exit hook, or a death by signal that
            # reads as a failure). Ignored, not handled: Python resets its own handlers before
            # the exit hooks run. SIGTERM still ends a shutdown that hangs.
            import signal

            signal.signal(signal.SIGINT, signal.SIG_IGN)
            raise


app = _Program(
    cls=_Group,
    name="dqnrun",
    help="Run value-based deep RL experiments: DQN and the Rainbow components (Double DQN, prioritized replay, dueling, n-step returns, C51, NoisyNet).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(cls=_Group, help="Inspect configs.", no_args_is_help=True)
app.add_typer(config_app, name="config")

EXIT_FAULT = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _version(value: bool) -> None:
    if value:
        from dqnrun import __version__

        typer.echo(f"dqnrun {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", metavar="", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Run value-based deep RL experiments: DQN and the Rainbow components (Double DQN, prioritized replay, dueling, n-step returns, C51, NoisyNet)."""




def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a UserError into one red line on stderr and exit code 2, a Fault (full disk, a run
    directory deleted mid-run) into one line and exit code 1: never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from dqnrun.console import fit_to_output

        fit_to_output()
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            from dqnrun.console import error

            error(str(exc))
            raise typer.Exit(EXIT_USER_ERROR) from None
        except Fault as exc:
            from dqnrun.console import error

            error(str(exc))
            raise typer.Exit(EXIT_FAULT) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


@contextlib.contextmanager
def stopped_runs(console: Any, resume: str) -> Iterator[None]:
    """A lost worker (exit 1) or a forced second Ctrl-C (exit 130) while seeds train: one line
    naming the command that continues from the last checkpoints."""
    from dqnrun.workers import WorkerFault

    try:
        yield
    except WorkerFault as exc:
        console.print(f"[red]{esc(exc)}; continue with `{esc(resume)}`[/red]")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print(f"[yellow]aborted: progress since each seed's last checkpoint is lost; "
                      f"continue with `{esc(resume)}`[/yellow]")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def esc(value: Any) -> str:
    """`value` as literal text inside rich markup: a run called "[/oops]" prints as itself."""
    from rich.markup import escape

    return escape(str(value))


def output_path(path: Optional[Path], force: bool) -> Optional[Path]:
    """Check before any work that a file the user named can be written (see safeio)."""
    from dqnrun.safeio import check_output

    return None if path is None else check_output(path, force)


def write_output(path: Path, write: Callable[[], Any]) -> Any:
    """Run `write` (which draws or writes `path`); a full disk, a read-only place or
    matplotlib's refusal of a title's math text is one line."""
    from dqnrun.safeio import output_errors

    try:
        with output_errors(path):
            return write()
    except BaseException as exc:
        import sys

        if "matplotlib.pyplot" in sys.modules:  # a figure that was not saved is not kept open
            sys.modules["matplotlib.pyplot"].close("all")
        if not isinstance(exc, ValueError):
            raise
        if "Parse" not in str(exc) and "mathtext" not in str(exc):
            raise
        where = str(exc).strip().splitlines()[0][:60]
        raise UserError(f"cannot draw {path}: matplotlib cannot read the math in a title or label ({where}); "
                        "write \\$ for a literal $") from None


def plot_labels(labels: list[str]) -> list[str]:
    """Run names as legend labels: a "$" in a directory name is a dollar sign, not math."""
    return [label.replace("$", "\\$") for label in labels]


FORCE_OUTPUT_HELP = "Replace the output file if it exists (without it, an existing file is never touched)."
SCHEDULER_HELP = ("Run on a Dask cluster: its scheduler's address (tcp://HOST:8786), or local:N for N local "
                  "Dask worker processes. Needs pip install \"dqnrun\\[dask]\".")
SET_HELP = "Override a config key, e.g. --set agent.learning_rate=0.0005 (repeatable; values are YAML)."
VECTORIZE_HELP = ("Train K seeds in one process with stacked networks and batched updates (sets speed.vectorize; "
                  "numbers may differ from K=1 in the last bits).")


# ---------------------------------------------------------------------------------------------
# train


@app.command()
@user_errors
def train(
    config_path: Optional[Path] = typer.Argument(None, metavar="CONFIG", help="YAML config, e.g. configs/ddqn.yaml."),
    set_: List[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    seeds: Optional[str] = typer.Option(None, help="Seeds, e.g. 1,2,3 or 1-10 or 1-3,7 (overrides `seeds`)."),
    episodes: Optional[int] = typer.Option(None, help="Episodes per seed (overrides `episodes`)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Seeds trained at once (default: cores, at most one per seed)."),
    device: str = typer.Option("auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps."),
    out: Path = typer.Option(Path("results"), help="Directory that holds run directories."),
    name: Optional[str] = typer.Option(None, help="Run directory name (default: the config's `name`)."),
    force: bool = typer.Option(False, "--force", metavar="", help="Replace an existing run of the same name."),
    resume: Optional[Path] = typer.Option(None, help="Continue an interrupted run directory from its checkpoints."),
    tensorboard: bool = typer.Option(False, "--tensorboard", metavar="", help="Write TensorBoard logs to RUN/tb/ (sets logging.tensorboard)."),
    scheduler: Optional[str] = typer.Option(None, help=SCHEDULER_HELP),
    vectorize: Optional[int] = typer.Option(None, "--vectorize", metavar="K", help=VECTORIZE_HELP),
) -> None:
    """Train every seed of a config in parallel and save the run under results/.

    [b]Examples[/b]

      dqnrun train configs/ddqn.yaml

      dqnrun train configs/per.yaml --set agent.learning_rate=0.0005 --seeds 1,2,3

      dqnrun train configs/ddqn.yaml --seeds 1-10 --scheduler tcp://10.0.0.5:8786

      dqnrun train configs/ddqn.yaml --seeds 1-10 --vectorize 5

      dqnrun train --resume results/ddqn
    """
    from dqnrun import experiment
    from dqnrun.config import parse_seeds
    from dqnrun.console import STDOUT, LiveTraining, TrainingDisplay, console, seed_summary

    if resume is not None and (config_path is not None or set_ or seeds or episodes or name or force or tensorboard
                               or vectorize is not None):
        raise UserError("--resume takes only the run directory (and --jobs/--device): the run keeps its config")
    overrides = list(set_)
    if vectorize is not None:
        overrides.append(f"speed.vectorize={vectorize}")
    if seeds is not None:
        overrides.append(f"seeds=[{', '.join(map(str, parse_seeds(seeds)))}]")
    if episodes is not None:
        overrides.append(f"episodes={episodes}")
    if tensorboard:
        overrides.append("logging.tensorboard=true")
    run_plan = experiment.start_run(config_path, overrides=overrides, out=out, force=force, resume=resume,
                                    jobs=jobs, device=device, scheduler=scheduler, name=name)
    STDOUT.tell_when_gone = True  # it trains for long: if its output is closed, say it goes on
    for note in run_plan.notes:
        console.print(f"[yellow]{esc(note)}[/yellow]")
    config, run_dir = run_plan.config, run_plan.run_dir
    from dqnrun.sweep import seed_budget

    console.print(
        f"[bold]{esc(config.name)}[/bold]: {config.variant} on {esc(config.env)}, seeds {list(config.seeds)}, "
        f"{seed_budget(config)[0]} each, device {run_plan.device}, {run_plan.where} -> {esc(run_dir)}"
    )
    if run_plan.tensorboard:
        console.print(f"TensorBoard: tensorboard --logdir {esc(run_dir.parent)}")
    display = TrainingDisplay(title=esc(f"{config.name} ({config.variant}, {config.env})"), seeds=run_plan.todo,
                              episodes=config.episodes, resumed_from=run_plan.resumed_from, jobs=run_plan.jobs,
                              max_steps=config.max_steps)
    with stopped_runs(console, f"dqnrun train --resume {run_dir}"), LiveTraining(display) as live:
        outcome = experiment.execute(run_plan, live.handle)
    if outcome.run is None:
        done = len(config.seeds) - len(outcome.unfinished)
        console.print(
            f"[yellow]interrupted: {done} of {len(config.seeds)} seeds complete, the others checkpointed; "
            f"continue with `dqnrun train --resume {esc(run_dir)}`[/yellow]"
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    console.print(seed_summary(outcome.run))
    console.print(f"saved [bold]{esc(run_dir)}[/bold]")


# ---------------------------------------------------------------------------------------------
# sweep


@app.command()
@user_errors
def sweep(
    sweep_path: Optional[Path] = typer.Argument(None, metavar="SWEEP", help="Sweep file, e.g. sweeps/lecture.yaml."),
    dry_run: bool = typer.Option(False, "--dry-run", metavar="", help="Print the points, seeds and budget; train nothing."),
    set_: List[str] = typer.Option([], "--set", "-s", help=SET_HELP + " Applies to every point."),
    seeds: Optional[str] = typer.Option(None, help="Seeds of every point, e.g. 1-5 (overrides the sweep's)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Seeds trained at once, across all points (default: cores)."),
    scheduler: Optional[str] = typer.Option(None, help=SCHEDULER_HELP),
    device: str = typer.Option("auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps."),
    out: Path = typer.Option(Path("results"), help="Directory that holds the sweep's directory."),
    name: Optional[str] = typer.Option(None, help="Sweep directory name (default: the sweep's `name`)."),
    force: bool = typer.Option(False, "--force", metavar="", help="Replace an existing sweep of the same name."),
    resume: Optional[Path] = typer.Option(None, help="Continue an interrupted sweep directory; finished points and seeds are kept."),
    vectorize: Optional[int] = typer.Option(None, "--vectorize", metavar="K", help=VECTORIZE_HELP + " Applies to every point."),
) -> None:
    """Run a study: every point of a sweep file, with its seeds, in one pool of workers.

    A sweep file holds a grid and/or a list of points; each point is a run directory under
    results/<sweep>/.

    [b]Examples[/b]

      dqnrun sweep sweeps/lecture.yaml --dry-run

      dqnrun sweep sweeps/dueling-lr-tau.yaml --seeds 1-5 --scheduler local:4

      dqnrun sweep --resume results/dueling-lr-tau

      dqnrun compare results/dueling-lr-tau
    """
    from dqnrun import sweep as sweeps
    from dqnrun.config import parse_seeds
    from dqnrun.console import STDOUT, LiveSweep, PointRow, SweepDisplay, console

    seed_list = parse_seeds(seeds) if seeds is not None else None
    if resume is not None and (sweep_path is not None or set_ or seeds or name or force or dry_run
                               or vectorize is not None):
        raise UserError("--resume takes only the sweep directory (and --jobs/--scheduler/--device): "
                        "its points keep their configs")
    if vectorize is not None:
        set_ = [*set_, f"speed.vectorize={vectorize}"]
    if dry_run:
        if sweep_path is None:
            raise UserError("missing SWEEP: e.g. `dqnrun sweep sweeps/lecture.yaml --dry-run`")
        print_sweep(sweeps.load_sweep(sweep_path, set_, seed_list, name))
        return
    plan = sweeps.start_sweep(sweep_path, overrides=set_, seeds=seed_list, name=name, out=out, force=force,
                              resume=resume, jobs=jobs, device=device, scheduler=scheduler)
    STDOUT.tell_when_gone = True  # it trains for long: if its output is closed, say it goes on
    for note in plan.notes:
        console.print(f"[yellow]{esc(note)}[/yellow]")
    where = f"Dask scheduler {scheduler}" if scheduler else f"{plan.jobs} job{'s' if plan.jobs > 1 else ''}"
    pending = sum(len(r.todo) for r in plan.runs)
    # Names and paths are printed literally: a manifest from elsewhere may name its sweep "[/x]".
    console.print(f"[bold]{esc(plan.manifest.name)}[/bold]: {len(plan.manifest.points)} points, {pending} seeds "
                  "to train" + (f" ({len(plan.finished)} points already complete)" if plan.finished else "")
                  + f", {esc(where)} -> {esc(plan.sweep_dir)}")
    display = SweepDisplay(esc(f"sweep {plan.manifest.name}"), [
        PointRow(r.run_dir.name, len(r.config.seeds), r.config.episodes, r.config.smoothing_window,
                 done=len(r.config.seeds) - len(r.todo)) for r in plan.runs])
    with stopped_runs(console, f"dqnrun sweep --resume {plan.sweep_dir}"), LiveSweep(display) as live:
        outcomes = sweeps.execute_sweep(plan, live.handle)
    unfinished = [o for o in outcomes if o.run is None]
    if unfinished:
        console.print(f"[yellow]interrupted: {len(outcomes) - len(unfinished) + len(plan.finished)} of "
                      f"{len(plan.manifest.points)} points complete, the others checkpointed; "
                      f"continue with `dqnrun sweep --resume {esc(plan.sweep_dir)}`[/yellow]")
        raise typer.Exit(EXIT_INTERRUPTED)
    console.print(f"saved [bold]{esc(plan.sweep_dir)}[/bold] ({len(plan.manifest.points)} points); "
                  f"compare them with `dqnrun compare {esc(plan.sweep_dir)}`")


def print_sweep(sweep: Any) -> None:
    """The --dry-run listing: one row per point with its swept values, and the budget."""
    from rich import box
    from rich.table import Table

    from dqnrun.console import console
    from dqnrun.sweep import budget

    b = budget(sweep)
    table = Table(title=esc(f"sweep {sweep.name} from {sweep.source}"), title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("point")
    for key in sweep.swept:
        table.add_column(esc(key))
    for col in ("variant", "seeds", "per seed"):
        table.add_column(col, justify="right" if col != "variant" else "left")
    for p in sweep.points:
        seeds = list(p.config.seeds)
        table.add_row(p.name, *(esc(p.values.get(k, "-")) for k in sweep.swept), p.config.variant,
                      f"{len(seeds)} ({', '.join(map(str, seeds[:6]))}{', ...' if len(seeds) > 6 else ''})",
                      b["per_seed"][p.name])
    console.print(table)
    steps = "unbounded env steps" if b["env_steps"] is None else f"at most {b['env_steps']:,} env steps"
    episodes = f"{b['episodes']:,} episodes, " if b["episodes"] else ""  # of the points that episodes bound
    console.print(f"{b['points']} points, {b['runs']} seed runs, {episodes}{steps}; nothing trained (--dry-run)")


# ---------------------------------------------------------------------------------------------
# config


@config_app.command("show")
@user_errors
def config_show(
    config_path: Path = typer.Argument(..., metavar="CONFIG", help="YAML config."),
    set_: List[str] = typer.Option([], "--set", "-s", help=SET_HELP),
) -> None:
    """Print the resolved config (preset defaults and overrides applied) as YAML.

    [b]Example[/b]

      dqnrun config show configs/dueling.yaml --set agent.tau=0.005
    """
    from dqnrun.config import load_config

    typer.echo(load_config(config_path, set_).to_yaml(), nl=False)


@config_app.command("keys")
def config_keys() -> None:
    """List every config key with its default and meaning.

    [b]Examples[/b]

      dqnrun config keys

      dqnrun config keys | grep agent.
    """
    from rich.table import Table

    from dqnrun.config import describe_keys
    from dqnrun.console import console

    table = Table("key", "default", "meaning")
    for key, default, doc in describe_keys():
        table.add_row(key, default, doc)
    console.print(table)


# ---------------------------------------------------------------------------------------------
# compare, plot, list

RUNS_HELP = "Run directories, results.joblib files or globs (default: every run under --root)."
BAND_HELP = "Band around each curve: minmax (the lecture's), ci (95% bootstrap CI of the mean), iqr, none."
SIZE_HELP = "column (3.3 in wide, for one column of a paper) or page (6.8 in)."
THRESHOLD_HELP = "Draw a horizontal line: env (the environment's reward threshold) or a score, e.g. 450."


def load_runs(args: list[str], root: Path) -> tuple[list[Any], list[str]]:
    """The runs named by `args` (or every run under `root`), each once, and notes."""
    from dqnrun.results import load_run, resolve_runs
    from dqnrun.stats import run_key
    from dqnrun.sweep import expand_runs, find_sweeps

    runs, notes, seen = [], [], set()
    sweeps = [] if args else find_sweeps(root)
    if sweeps:  # a study's points would crowd the table: name it, do not skip it silently
        notes.append(f"not included: the sweep{'s' if len(sweeps) > 1 else ''} "
                     f"{', '.join(f'{p}/' for p in sweeps)}; name one to include its points, "
                     f"e.g. {' '.join(str(p) for p in sweeps[:1])}")
    try:
        expanded, unfinished = expand_runs(args)
        notes += unfinished
        paths = resolve_runs(expanded, root)
    except UserError:
        if not sweeps:
            raise
        raise UserError(f"no runs directly under {root}/, only the sweep{'s' if len(sweeps) > 1 else ''} "
                        f"{', '.join(f'{p}/' for p in sweeps)}: name one to include its points, "
                        f"e.g. {sweeps[0]}") from None
    for path in paths:
        run = load_run(path)
        key = run_key(run)
        if key in seen:
            notes.append(f"{path} was given twice; shown once")
            continue
        seen.add(key)
        runs.append(run)
    return runs, notes


def parse_threshold(text: Optional[str]) -> float | str | None:
    if text is None or text == "env":
        return text
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--threshold {text!r}: expected env (the environment's reward threshold) "
                        f"or a score, e.g. --threshold 450") from None


def default_plot_path(root: Path, labels: list[str]) -> Path:
    """A new <root>/<A>-vs-<B>.png: -2, -3, ... where that file exists."""
    stem = plot_stem(labels)
    path = root / f"{stem}.png"
    k = 2
    while path.exists():
        path = root / f"{stem}-{k}.png"
        k += 1
    return path


def plot_stem(labels: list[str], limit: int = 80) -> str:
    """<A>-vs-<B>-vs-<C> while it fits in `limit` characters, else the first names that fit (at
    most three) and -and-N-more: a name that reads, never one cut in the middle of a word."""
    names = [label.replace("/", "_") for label in labels]
    if len("-vs-".join(names)) <= limit:
        return "-vs-".join(names)
    for k in range(min(3, len(names) - 1), 0, -1):
        stem = "-vs-".join(names[:k]) + f"-and-{len(names) - k}-more"
        if len(stem) <= limit:
            return stem
    more = f"-and-{len(names) - 1}-more" if len(names) > 1 else ""
    return cut_between_words(names[0], limit - len(more)) + more


def cut_between_words(name: str, limit: int) -> str:
    """`name` cut to at most `limit` characters at a separator (- or _), none left dangling;
    a single word longer than `limit` is cut where it must."""
    if len(name) <= limit:
        return name
    words = re.split(r"(?<=[-_])", name)  # each word keeps the separator after it
    kept = ""
    for word in words:
        if len(kept + word.rstrip("-_")) > limit:
            break
        kept += word
    return kept.rstrip("-_") or name[:limit]


def print_notes(notes: list[str], out: Any) -> None:
    for note in notes:
        out.print(f"[yellow]note: {esc(note)}[/yellow]")


@app.command()
@user_errors
def plot(
    runs: List[str] = typer.Argument(None, metavar="RUN", help=RUNS_HELP),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Figure file: .png, .svg or .pdf (default: a new <root>/<A>-vs-<B>.png)."),
    x: str = typer.Option("auto", "--x", help="x axis: episodes, steps (every seed on one env-step grid), or auto: "
                                             "steps when a run is evaluated every N env steps, else episodes."),
    y: str = typer.Option("eval", "--y", help="y axis: eval (each run's evaluation score; its training return "
                          "where it did not evaluate) or train (every run's training return, smoothed over its "
                          "window: the curve papers plot that report returns while learning)."),
    band: str = typer.Option("minmax", help=BAND_HELP),
    threshold: Optional[str] = typer.Option(None, metavar="env|SCORE", help=THRESHOLD_HELP),
    size: str = typer.Option("page", help=SIZE_HELP),
    title: Optional[str] = typer.Option(None, help="Figure title (default: the environment and the window)."),
    facet: Optional[str] = typer.Option(None, metavar="KEY", help="One panel per value of this config key, "
                                        "e.g. agent.tau for a sweep's points; lines are labelled by the other keys."),
    root: Path = typer.Option(Path("results"), help="Where runs are looked for when none is named."),
    force: bool = typer.Option(False, "--force", metavar="", help=FORCE_OUTPUT_HELP),
) -> None:
    """Draw learning curves: per run the smoothed scores' mean and a band over the seeds.

    One panel per environment; the figure states the environment and the smoothing window. A run
    trained with eval_every_steps draws its evaluation curve against env steps (not smoothed):
    every seed's evaluations interpolated onto one env-step grid, never extrapolated.

    [b]Examples[/b]

      dqnrun plot results/dqn results/ddqn -o dqn-vs-ddqn.png

      dqnrun plot results/dqn results/ddqn --size column --band ci --threshold env -o fig.pdf

      dqnrun plot 'results/*' --x steps -o all.svg

      dqnrun plot results/dueling-lr-tau --facet agent.tau --band ci -o lr-tau.png

      dqnrun plot results/minatar-breakout --y train --x steps -o breakout.png
    """
    from dqnrun.console import console
    from dqnrun.plots import learning_curves, save_figure
    from dqnrun.stats import align, is_step_evaluated, run_labels

    output_path(output, force)
    loaded, notes = load_runs(runs or [], root)
    labels = run_labels(loaded)
    # Runs are cut to a common number of episodes only on an episode axis: on env steps each
    # seed keeps all its episodes, and the x axis shows how far each run got.
    on_steps = x == "steps" or (x == "auto" and any(is_step_evaluated(r) for r in loaded))
    lengths, cut_notes = (None, []) if on_steps else align(loaded, labels)
    out = output or default_plot_path(root, labels)
    fig, draw_notes = write_output(out, lambda: learning_curves(
        loaded, x=x, title=title, band=band, threshold=parse_threshold(threshold), size=size,
        labels=plot_labels(labels), lengths=lengths, facet=facet, y=y))
    write_output(out, lambda: save_figure(fig, out))
    print_notes(notes + cut_notes + draw_notes, console)
    console.print(f"wrote [bold]{esc(out)}[/bold]")


def parse_norms(items: list[str]) -> dict[str, tuple[float, float]]:
    norms = {}
    for item in items:
        env, sep, pair = item.partition("=")
        low, sep2, high = pair.partition(":")
        try:
            if not (sep and sep2 and env):
                raise ValueError
            norms[env] = (float(low), float(high))
        except ValueError:
            raise UserError(f"--norm {item!r}: expected ENV=RANDOM:REFERENCE, e.g. --norm Acrobot-v1=-500:-100") from None
        if norms[env][0] == norms[env][1]:
            raise UserError(f"--norm {item!r}: the two scores must differ")
    return norms


def find_baseline(name: Optional[str], runs: list[Any], labels: list[str]) -> int:
    if name is None:
        return 0
    from dqnrun.stats import run_key

    target = Path(name)
    for i, run in enumerate(runs):
        if labels[i] == name or (target.exists() and run_key(run) in (target.resolve(), target.resolve().parent)):
            return i
    raise UserError(f"--baseline {name!r} is not one of the compared runs ({', '.join(labels)})")


@app.command()
@user_errors
def compare(
    runs: List[str] = typer.Argument(None, metavar="RUN", help=RUNS_HELP),
    last: Optional[int] = typer.Option(
        None, help="Final score = mean of the last N raw scores (default: the run's window), or of the last N "
                   "evaluations of a run evaluated every N env steps (default: 1)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, markdown, csv or json (csv and json: numbers as numbers)."),
    wide: bool = typer.Option(False, "--wide", metavar="", help="Every column (variant, seeds, best, AUC, env steps, wall time)."),
    baseline: Optional[str] = typer.Option(None, metavar="RUN", help="The run P(>) compares against (default: the first)."),
    norm: List[str] = typer.Option(
        [], metavar="ENV=RANDOM:REFERENCE",
        help="Scores of 0 and 1 of an environment's normalised score (default: a random policy and the reward threshold)."),
    plot_file: Optional[Path] = typer.Option(None, "--plot", help="Also draw the learning curves to this file."),
    profile: Optional[Path] = typer.Option(None, help="Across environments: draw the performance profile to this file."),
    size: str = typer.Option("page", help="Figure size for --plot and --profile: " + SIZE_HELP),
    root: Path = typer.Option(Path("results"), help="Where runs are looked for when none is named."),
    force: bool = typer.Option(False, "--force", metavar="", help="Replace the --plot and --profile files if they exist."),
) -> None:
    """Compare saved runs: final score, 95% CI, IQM, episodes to the threshold, P(improvement).

    The final score is the mean of each seed's last scores, with a bootstrap CI over seeds; the
    probability of improvement is over a baseline run (--baseline, default the first). Runs on
    several environments also get an aggregate per variant over normalised scores (0 = a random
    policy, 1 = the reward threshold): IQM with a stratified bootstrap CI and, with --profile, a
    performance profile (Agarwal et al. 2021). A run trained with eval_every_steps is scored by
    its evaluations (the last one per seed by default), and a curve column says which curve each
    row uses; a run that dqnrun evaluate has measured shows that measurement too.

    [b]Examples[/b]

      dqnrun compare

      dqnrun compare results/dqn results/ddqn --format markdown --wide

      dqnrun compare results/dqn results/ddqn --baseline results/ddqn --format csv > table.csv

      dqnrun compare results/ddqn acrobot/ddqn --profile profile.pdf
    """
    from dqnrun import tables
    from dqnrun.console import console, err_console
    from dqnrun.stats import compare_runs, run_labels

    if fmt not in tables.FORMATS:
        raise UserError(f"--format {fmt!r}: expected {', '.join(tables.FORMATS)}")
    if last is not None and last < 1:
        raise UserError(f"--last must be >= 1, got {last}")
    norms = parse_norms(norm)
    output_path(plot_file, force)
    output_path(profile, force)
    if plot_file is not None and profile is not None and plot_file.resolve() == profile.resolve():
        raise UserError(f"--plot and --profile both name {plot_file}; give them different files")
    loaded, notes = load_runs(runs or [], root)
    labels = run_labels(loaded)
    comparison = compare_runs(loaded, last, find_baseline(baseline, loaded, labels), norms)
    notes += comparison.notes
    absent = sorted(set(norms) - set(comparison.envs))
    if absent:
        raise UserError(f"--norm {absent[0]}: no compared run is on {absent[0]} "
                        f"(their environments: {', '.join(comparison.envs) or 'unknown'})")
    if profile is not None and not comparison.aggregates:
        raise UserError("--profile needs runs on at least two environments with a normalisation")
    if any(s.lecture for s in comparison.rows):
        notes.append("lecture result files hold only smoothed max/min/mean curves: their final score and AUC "
                     "come from the mean curve, and seeds, IQM, CI, steps and time are unknown")
    if fmt == "csv":
        typer.echo(tables.to_csv(comparison), nl=False)
    elif fmt == "json":
        typer.echo(tables.to_json(comparison), nl=False)
    elif fmt == "markdown":
        typer.echo(tables.to_markdown(comparison, wide), nl=False)
    else:
        tables.print_comparison(console, comparison, last, wide)
    out = console if fmt == "table" else err_console
    written = []
    if plot_file is not None:
        from dqnrun.plots import learning_curves, save_figure
        from dqnrun.stats import align

        lengths, _ = align(loaded, labels)
        fig, draw_notes = learning_curves(loaded, size=size, labels=plot_labels(labels), lengths=lengths)
        notes += draw_notes
        written.append(write_output(plot_file, lambda: save_figure(fig, plot_file)))
    if profile is not None:
        from dqnrun.plots import performance_profile, save_figure

        fig = performance_profile({a.variant: a.per_env for a in comparison.aggregates}, size=size)
        written.append(write_output(profile, lambda: save_figure(fig, profile)))
    print_notes(notes, out)
    for path in written:
        out.print(f"wrote [bold]{esc(path)}[/bold]")


@app.command("list")
@user_errors
def list_runs(
    root: Path = typer.Argument(Path("results"), metavar="DIR", help="Directory of runs (default: results)."),
) -> None:
    """List saved runs: name, variant, environment, seeds, episodes, created, final score, status.

    [b]Examples[/b]

      dqnrun list

      dqnrun list other-results/
    """
    import math

    from dqnrun.console import console, runs_table
    from dqnrun.results import RunDir, find_runs, load_run, read_progress
    from dqnrun.stats import agent_label, summarize
    from dqnrun.sweep import find_sweeps, load_manifest

    if not root.is_dir():
        raise UserError(f"no such directory: {root}")
    found = find_runs(root)
    sweeps = find_sweeps(root)
    folders = {}  # plain folders of runs, one level down: a row each, pointing into it
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                       and p not in found and p not in sweeps):
        inside = len(find_runs(path) + find_sweeps(path))
        if inside:
            folders[path] = inside
    if not found and not sweeps and not folders:
        raise UserError(f"no runs under {root}/; train one with `dqnrun train configs/ddqn.yaml`")
    rows: list[tuple[str, ...]] = []
    add_row = rows.append

    for path in found:
        if path.is_dir() and not RunDir(path).is_finished():
            try:
                progress = read_progress(path)
            except UserError as exc:
                add_row((path.name, "?", "?", "?", "?", "-", "-", f"unreadable: {exc}"))
                continue
            cfg = progress.config
            done = f"{sum(progress.episodes_done.values()):,}"
            if cfg.max_steps is None:
                done += f"/{len(cfg.seeds) * cfg.episodes:,} episodes"
            else:  # an env-step budget: how much of it is done
                steps = sum(min(n, cfg.max_steps) for n in progress.env_steps_done.values())
                done += f" episodes, {steps:,}/{len(cfg.seeds) * cfg.max_steps:,} env steps"
            state = "training" if progress.is_live else "interrupted"
            resume = RunDir(path).resume_command()
            # With an env-step budget the episode count is not known until the run ends.
            planned = str(cfg.episodes) if cfg.max_steps is None else "-"
            add_row((path.name, agent_label(cfg.agent), cfg.env, str(len(cfg.seeds)), planned, "-", "-",
                     f"{state}: {len(progress.finished_seeds)}/{len(cfg.seeds)} seeds done, {done}"
                     + ("" if progress.is_live else f" ({resume})")))
            continue
        try:
            run = load_run(path)
        except UserError as exc:
            add_row((path.name, "?", "?", "?", "?", "-", "-", f"unreadable: {exc}"))
            continue
        s = summarize(run, None)
        final = "-" if not math.isfinite(s.final_mean) else f"{s.final_mean:.1f}"
        created = run.created.replace("T", " ")[:16] or "-"
        status = "lecture file" if run.is_lecture else (
            "complete" if all(x == "complete" for x in run.status)
            else ", ".join(f"{seed}: {x}" for seed, x in zip(run.seeds, run.status) if x != "complete"))
        # A run is named by its folder, as `compare` labels it: a copy keeps the name stored inside.
        add_row((path.name if path.is_dir() else run.name, s.variant, s.env_id,
                 "-" if s.n_seeds is None else str(s.n_seeds), str(s.episodes), created, final, status))
    for path in sweeps:  # a study: one row, its points listed by `dqnrun list` of its directory
        try:
            points = f"{len(load_manifest(path).points)} points"
        except UserError as exc:
            add_row((f"{path.name}/", "sweep", "?", "?", "?", "-", "-", f"unreadable: {exc}"))
            continue
        add_row((f"{path.name}/", "sweep", "-", "-", "-", "-", "-", points))
    for path, inside in folders.items():
        add_row((f"{path.name}/", "folder", "-", "-", "-", "-", "-", f"{inside} run{'s' if inside > 1 else ''}"))
    table, hidden = runs_table(str(root), rows, console.width)
    console.print(table)
    if sweeps or folders:  # one line for all of them: a path in every row would crowd a narrow terminal
        console.print(f"(a sweep's or folder's runs: dqnrun list {root / '<name>'})", soft_wrap=True, markup=False)
    if hidden:
        console.print(f"({', '.join(hidden)} left out to fit {console.width} columns; a wider terminal shows "
                      f"{'them' if len(hidden) > 1 else 'it'})", soft_wrap=True, markup=False)


# ---------------------------------------------------------------------------------------------
# watch, evaluate


@app.command()
@user_errors
def watch(
    run: Path = typer.Argument(..., metavar="RUN", help="Run directory, e.g. results/ddqn."),
    seed: Optional[int] = typer.Option(None, help="Model of this seed (default: the seed with the best score)."),
    episodes: int = typer.Option(1, "--episodes", "-n", help="Greedy episodes to play."),
    fps: Optional[int] = typer.Option(None, help="Frames per second (default: the environment's)."),
    record: Optional[Path] = typer.Option(None, help="Write a .gif or .mp4 instead of opening a window (no display needed)."),
    scale: float = typer.Option(1.0, help="Resize recorded frames by this factor, e.g. 0.5."),
    env_seed: int = typer.Option(0, help="Seed of the episodes' initial states."),
    model: str = typer.Option("best", "--model", help="best (highest evaluation score while training) or final (end of training)."),
    force: bool = typer.Option(False, "--force", metavar="", help="Replace the --record file if it exists."),
) -> None:
    """Play a saved policy in a window, or record it to a GIF or MP4.

    [b]Examples[/b]

      dqnrun watch results/ddqn

      dqnrun watch results/ddqn --record ddqn.gif --episodes 2
    """
    from dqnrun.console import console
    from dqnrun.results import MODEL_KINDS
    from dqnrun.watch import best_policy, check_record_path, has_display, play, watch_notes
    from dqnrun.watch import record as record_policy

    if episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {episodes}")
    if fps is not None and fps < 1:
        raise UserError(f"--fps must be >= 1, got {fps}")
    if not 0 < scale <= 4:
        raise UserError(f"--scale must be in (0, 4], got {scale}")
    if env_seed < 0:
        raise UserError(f"--env-seed must be >= 0, got {env_seed}")
    if record is not None:
        check_record_path(record)
        output_path(record, force)
    if model not in MODEL_KINDS:
        raise UserError(f"--model {model!r}: expected best or final")
    policy = best_policy(run, seed, model)
    if record is None and not has_display():  # before anything is printed: the error is the only line
        raise UserError("no display here (DISPLAY is not set); record a file instead: --record policy.gif")
    for note in watch_notes(run, policy) if seed is None else []:
        console.print(f"[yellow]{esc(note)}[/yellow]")
    saved = (f"score {policy.score:.1f} at episode {policy.episode}" if math.isfinite(policy.score)
             else "score -: never evaluated")
    console.print(f"{esc(run)}: seed {policy.seed} ({esc(policy.variant)}, {model} model: {saved}) "
                  f"on {esc(policy.env_id)}")

    def report(episode: int, total: float, length: int) -> None:
        console.print(f"episode {episode}: return {total:.1f}, {length} steps")

    if record is not None:
        frames = write_output(record, lambda: record_policy(policy, record, episodes, fps, env_seed, scale, report))
        console.print(f"wrote [bold]{esc(record)}[/bold] ({frames} frames)")
    elif not play(policy, episodes, fps, env_seed, report):
        console.print("stopped (Ctrl-C)")


@app.command()
@user_errors
def evaluate(
    run: Path = typer.Argument(..., metavar="RUN", help="Run directory, e.g. results/ddqn."),
    episodes: int = typer.Option(100, "--episodes", "-n", help="Greedy episodes per model, run as one batch."),
    seed: Optional[int] = typer.Option(None, help="Only the model of this seed (default: every seed's)."),
    env_seed: int = typer.Option(0, help="Seed of the episodes' initial states (the same for every model)."),
    model: str = typer.Option("best", "--model", help="best (highest evaluation score while training) or final (end of training)."),
) -> None:
    """Measure saved policies: greedy returns of each seed's model, their mean and a 95% CI.

    Beside each model's score when training saved it: a "best" model was picked on few
    episodes, so its re-evaluated score is often lower. The mean across seeds has a 95%
    percentile bootstrap CI over seeds. What was measured is saved in the run directory as
    evaluation-<model>.json (one seed's: evaluation-<model>-seed-<s>.json); an earlier, different
    measurement there is kept as evaluation-<model>-2.json (-3, ...).

    [b]Examples[/b]

      dqnrun evaluate results/ddqn --episodes 100

      dqnrun evaluate results/ddqn --model final
    """
    from rich import box
    from rich.table import Table

    from dqnrun.console import console
    from dqnrun.results import MODEL_KINDS
    from dqnrun.watch import MAX_EVALUATE, evaluate_policy, evaluation_record, policies, run_dir_of, whole_run_notes

    if episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {episodes}")
    if episodes > MAX_EVALUATE:
        raise UserError(f"--episodes must be <= {MAX_EVALUATE:,} (run it again with another --env-seed for more), "
                        f"got {episodes:,}")
    if env_seed < 0:
        raise UserError(f"--env-seed must be >= 0, got {env_seed}")
    if model not in MODEL_KINDS:
        raise UserError(f"--model {model!r}: expected best or final")
    loaded = policies(run, seed, model)
    for note in whole_run_notes(run, model) if seed is None else []:
        console.print(f"[yellow]{esc(note)}[/yellow]")
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("seed", "at training (episode)", "mean", "gap", "std", "min", "max"):
        table.add_column(col, justify="right")
    means, saved, measured = [], [], []
    for policy in loaded:
        returns = evaluate_policy(policy, episodes, env_seed)
        measured.append((policy, returns))
        means.append(returns.mean())
        saved.append(policy.score)
        known = math.isfinite(policy.score)  # nan: saved by a seed that never evaluated
        table.add_row(str(policy.seed), f"{policy.score:.1f} ({policy.episode})" if known else "-",
                      f"{returns.mean():.1f}", f"{returns.mean() - policy.score:+.1f}" if known else "-",
                      f"{returns.std():.1f}", f"{returns.min():.1f}", f"{returns.max():.1f}")
    if len(means) > 1:
        import numpy as np

        table.add_section()
        all_known = all(math.isfinite(s) for s in saved)
        table.add_row("all", f"{np.mean(saved):.1f}" if all_known else "-", f"{np.mean(means):.1f}",
                      f"{np.mean(means) - np.mean(saved):+.1f}" if all_known else "-", f"{np.std(means):.1f}",
                      f"{np.min(means):.1f}", f"{np.max(means):.1f}")
    console.print(f"{esc(run)}: {model} model of each seed, {episodes} greedy episode{'' if episodes == 1 else 's'} on {esc(loaded[0].env_id)} "
                  f"(initial states from --env-seed {env_seed}); 'at training' = its evaluation score when saved")
    console.print(table)
    run_dir = run_dir_of(run)
    doc = evaluation_record(run_dir, model, episodes, env_seed, measured)
    across = doc["across_seeds"]
    if across["ci_low"] is not None:
        console.print(f"mean over {across['n_seeds']} seeds {across['mean']:.1f}, 95% CI "
                      f"[{across['ci_low']:.1f}, {across['ci_high']:.1f}]: {across['method']}")
    try:
        path, kept = run_dir.save_evaluation(doc, model, seed)
    except OSError as exc:  # a read-only run from elsewhere: the table above is the measurement
        from dqnrun.safeio import describe_oserror

        console.print(f"[yellow]note: not saved as {esc(run_dir.evaluation(model, seed))}: "
                      f"{describe_oserror(exc)}[/yellow]")
        return
    console.print(f"saved [bold]{esc(path)}[/bold]" + (
        f" (the file that was there is kept as {esc(kept.name)})" if kept else ""))


def reflow(doc: str | None) -> str | None:
    """A docstring whose paragraphs are each one line, so that the help (rich markup, which keeps
    line breaks) wraps them to the terminal; indented blocks (the examples) stay as written."""
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(p if p.startswith(" ") else " ".join(p.split("\n")) for p in paragraphs)


# Every command's help, whoever wrote it, wraps to the terminal (Typer reads the docstrings when
# the app runs, after this).
for _typer in (app, config_app):
    for _info in _typer.registered_commands:
        _info.callback.__doc__ = reflow(_info.callback.__doc__)
        if _info.cls in (None, typer.core.TyperCommand):
            _info.cls = _Command


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
