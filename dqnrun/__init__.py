"""dqnrun: an experiment runner for value-based deep reinforcement learning.

The Python API (the `dqnrun` command runs the same code)::

    import dqnrun
    run = dqnrun.train("configs/ddqn.yaml", seeds=[1, 2], overrides=["episodes=30", "window=5"])
    run = dqnrun.load_run("results/ddqn")           # a typed view of a finished run
    policy = dqnrun.load_policy("results/ddqn")     # the best seed's saved model
    action = policy(observation)

Importing dqnrun is cheap: torch and the environments load when first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

__version__ = "0.1.0"

__all__ = ["train", "load_run", "load_policy", "Config", "load_config", "UserError", "Run", "Policy",
           "__version__"]

from dqnrun.errors import UserError

if TYPE_CHECKING:
    from dqnrun.config import Config, load_config
    from dqnrun.results import Run, load_run
    from dqnrun.trainer import Event
    from dqnrun.watch import Policy

# Loaded on first use (PEP 562), so that `import dqnrun` and `dqnrun --help` stay fast.
_LAZY = {"Config": "dqnrun.config", "load_config": "dqnrun.config", "Run": "dqnrun.results",
         "load_run": "dqnrun.results", "Policy": "dqnrun.watch"}


def train(
    config: "str | Path | dict[str, Any] | Config",
    *,
    overrides: Sequence[str] = (),
    seeds: Sequence[int] | str | None = None,
    out: str | Path = "results",
    name: str | None = None,
    jobs: int | None = None,
    device: str = "auto",
    on_event: Callable[["Event"], None] | None = None,
    scheduler: str | None = None,
) -> "Run":
    """Train every seed of a config and return the finished run (what `dqnrun train` does).

    `config` is a YAML path, a plain dict (the YAML's structure; the variant's preset fills the
    agent switches it leaves out) or a `Config` (taken as it is); `overrides` are
    `"dotted.key=value"` strings as for `--set`; `seeds` (integers, or a string as for `--seeds`:
    "1-5") and `name` replace the config's. The run
    goes to `out/<name>` (`out/<name>-2` if that exists). `jobs` seeds train at once (default:
    as many as cores and seeds allow); `device` is auto, cpu, cuda or mps. `on_event` receives
    each trainer event (`EpisodeEnd` after every episode, `SeedEnd` per seed) in this process.
    `scheduler` runs the seeds on a Dask cluster (`"tcp://host:8786"`, or `"local:N"`).

    Raises `UserError` for a bad config or option. An interruption (Ctrl-C) keeps the
    checkpoints and raises KeyboardInterrupt naming `dqnrun train --resume <run>`.
    """
    from dqnrun import experiment

    extra = [overrides] if isinstance(overrides, str) else list(overrides)
    if seeds is not None:
        extra.append(f"seeds=[{', '.join(map(str, _seed_list(seeds)))}]")
    run_plan = experiment.start_run(config, overrides=extra, out=out, jobs=jobs, device=device,
                                    scheduler=scheduler, name=name)
    outcome = experiment.execute(run_plan, on_event)
    if outcome.run is None:
        raise KeyboardInterrupt(f"interrupted; continue with `dqnrun train --resume {outcome.run_dir}`")
    return outcome.run


def _seed_list(seeds: "Sequence[int] | str") -> list[int]:
    """`seeds` as given to `train`: integers, or a string as for --seeds ("1-5", "1,2,3")."""
    from dqnrun.config import parse_seeds

    if isinstance(seeds, str):
        return parse_seeds(seeds, option="seeds")
    out = []
    for s in seeds:
        if isinstance(s, bool) or not hasattr(s, "__index__"):
            raise UserError(f"seeds: {s!r} is not an integer; pass integers, e.g. seeds=[1, 2, 3], or seeds='1-3'")
        out.append(int(s))
    return out


def load_policy(run_or_model_path: str | Path, seed: int | None = None, which: str = "best") -> "Policy":
    """A saved policy, rebuilt: `policy(obs)` gives the greedy action (an int for one observation,
    an array for a batch) and `policy.q_values(obs)` the Q-values.

    `run_or_model_path` is a run directory (then `seed` picks the seed; default: the seed whose
    model scored best) or a model file (`models/seed-<s>.pt`). `which` is "best" (the model with
    the highest evaluation score during training) or "final" (the model at the end).
    Raises `UserError` for a missing, foreign or damaged run or model.
    """
    from dqnrun.watch import load_policy as load

    return load(run_or_model_path, seed, which)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dqnrun' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
