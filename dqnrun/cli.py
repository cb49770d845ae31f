"""The `dqnrun` command line (Typer): thin commands over the modules below."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from dqnrun.errors import UserError

app = typer.Typer(
    name="dqnrun",
    help="Run value-based deep RL experiments: DQN, Double DQN, Prioritized Replay, Dueling.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Inspect configs.", no_args_is_help=True)
app.add_typer(config_app, name="config")

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a UserError into one red line on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            from dqnrun.console import error

            error(str(exc))
            raise typer.Exit(EXIT_USER_ERROR) from None

    return wrapper


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected integers separated by commas, e.g. --seeds 1,2,3") from None
    if not seeds:
        raise UserError("--seeds needs at least one seed, e.g. --seeds 1,2,3")
    return seeds


def resolve_device(name: str) -> str:
    import torch

    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("--device mps: no Apple MPS device is available here; use --device cpu or auto")
    if name not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {name!r}: expected auto, cpu, cuda or mps")
    return name


SET_HELP = "Override a config key, e.g. --set agent.learning_rate=0.0005 (repeatable; values are YAML)."


# ---------------------------------------------------------------------------------------------
# train


@app.command()
@user_errors
def train(
    config_path: Optional[Path] = typer.Argument(None, metavar="CONFIG", help="YAML config, e.g. configs/ddqn.yaml."),
    set_: List[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    seeds: Optional[str] = typer.Option(None, help="Comma-separated seeds, e.g. 1,2,3 (overrides `seeds`)."),
    episodes: Optional[int] = typer.Option(None, help="Episodes per seed (overrides `episodes`)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Seeds trained at once [default: cores, at most one per seed]."),
    device: str = typer.Option("auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps."),
    out: Path = typer.Option(Path("results"), help="Directory that holds run directories."),
    name: Optional[str] = typer.Option(None, help="Run directory name [default: the config's `name`]."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run of the same name."),
    resume: Optional[Path] = typer.Option(None, help="Continue an interrupted run directory from its checkpoints."),
) -> None:
    """Train every seed of a config in parallel and save the run under results/.

    [b]Examples[/b]

      dqnrun train configs/ddqn.yaml

      dqnrun train configs/per.yaml --set agent.learning_rate=0.0005 --seeds 1,2,3

      dqnrun train --resume results/ddqn
    """
    from dqnrun import experiment
    from dqnrun.config import load_config
    from dqnrun.console import LiveTraining, TrainingDisplay, console, seed_summary

    if resume is not None:
        if config_path is not None or set_ or seeds or episodes or name or force:
            raise UserError("--resume takes only the run directory (and --jobs/--device): the run keeps its config")
        run_dir = resume
        if not (run_dir / "config.yaml").is_file():
            raise UserError(f"{run_dir} is not a dqnrun run directory (no config.yaml)")
        config = load_config(run_dir / "config.yaml")
        spec = experiment.plan(config)
        if (run_dir / "results.joblib").exists() and not experiment.pending_seeds(run_dir, config):
            raise UserError(f"{run_dir} is already complete; nothing to resume")
    else:
        if config_path is None:
            raise UserError("missing CONFIG: e.g. `dqnrun train configs/ddqn.yaml` (or --resume RUN_DIR)")
        overrides = list(set_)
        if seeds is not None:
            overrides.append(f"seeds=[{', '.join(map(str, parse_seeds(seeds)))}]")
        if episodes is not None:
            overrides.append(f"episodes={episodes}")
        if name is not None:
            overrides.append(f"name={name}")
        config = load_config(config_path, overrides)
        spec = experiment.plan(config)
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    dev = resolve_device(device)

    if resume is None:
        from dqnrun.results import claim_run_dir, write_text

        run_dir, note = claim_run_dir(out, config.name, force=force)
        if note:
            console.print(f"[yellow]{note}[/yellow]")
        earlier = out / config.name
        if note and not force and (earlier / "seeds").is_dir() and not (earlier / "results.joblib").exists():
            console.print(f"[yellow]{earlier} is unfinished: `dqnrun train --resume {earlier}` continues it[/yellow]")
        write_text(run_dir / "config.yaml", config.to_yaml())

    todo = experiment.pending_seeds(run_dir, config)
    n_jobs = jobs or experiment.default_jobs(len(todo))
    n_jobs = max(1, min(n_jobs, len(todo) or 1))
    console.print(
        f"[bold]{config.name}[/bold]: {config.variant} on {config.env}, seeds {list(config.seeds)}, "
        f"{config.episodes} episodes, device {dev}, {n_jobs} job{'s' if n_jobs > 1 else ''} -> {run_dir}"
    )
    display = TrainingDisplay(title=f"{config.name} ({config.variant}, {config.env})", seeds=todo,
                              episodes=config.episodes)
    with LiveTraining(display) as live:
        statuses = experiment.run_seeds(config, todo, spec, run_dir, n_jobs, dev, live.handle)
    unfinished = [s for s in config.seeds if s in statuses and statuses[s] == "interrupted"] + [
        s for s in todo if s not in statuses
    ]
    if unfinished:
        done = len(config.seeds) - len(experiment.pending_seeds(run_dir, config))
        console.print(
            f"[yellow]interrupted: {done} of {len(config.seeds)} seeds complete, the others checkpointed; "
            f"continue with `dqnrun train --resume {run_dir}`[/yellow]"
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    data = experiment.assemble(run_dir, config, dev)
    console.print(seed_summary(data))
    console.print(f"saved [bold]{run_dir}[/bold]")


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
    """List every config key with its default and meaning."""
    from rich.table import Table

    from dqnrun.config import describe_keys
    from dqnrun.console import console

    table = Table("key", "default", "meaning")
    for key, default, doc in describe_keys():
        table.add_row(key, default, doc)
    console.print(table)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
