"""Sweeps: a study of many runs (points x seeds) from one file, trained in one pool of chunks.

A sweep file names a base config, a `grid` (the cross product of dotted keys' value lists)
and/or explicit `points` (mappings of overrides; `config:` picks another base), seeds and a
name. Every point is an ordinary run directory `<out>/<sweep>/<point>/`, named after its swept
values; `<out>/<sweep>/sweep.yaml` (the manifest) lists the points and their values.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from dqnrun.config import Config, describe_keys, load_config, parse_seeds
from dqnrun.errors import UserError
from dqnrun.results import RunDir, claim_run_dir, write_text
from dqnrun.safeio import read_text

SWEEP_FORMAT = "dqnrun-sweep"
MANIFEST = "sweep.yaml"
SWEEP_KEYS = ("name", "base", "grid", "points", "seeds", "set")
# Short names of swept keys in point names; keys in VALUE_ONLY show just their value.
SHORT = {"learning_rate": "lr", "target_update_steps": "sync", "memory_size": "mem", "memory_start_size": "start",
         "batch_size": "batch", "eval_episodes": "eval", "decay_steps": "decay", "checkpoint_every": "ckpt"}
VALUE_ONLY = ("variant", "config", "env")


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its directory name, the values that set it apart, its config."""

    name: str
    values: dict[str, Any]  # swept key -> value ("config" -> the base file it names)
    config: Config


@dataclass(frozen=True)
class Sweep:
    name: str
    source: Path
    swept: tuple[str, ...]  # keys whose values differ between points, in file order
    points: tuple[Point, ...]

    @property
    def seeds(self) -> int:
        return sum(len(p.config.seeds) for p in self.points)


# ---------------------------------------------------------------------------------------------
# Reading a sweep file


def _keys() -> dict[str, str]:
    return {key: default for key, default, _ in describe_keys()}


def _check_key(key: Any, where: str, source: Path) -> str:
    keys = _keys()
    if not isinstance(key, str) or key == "name":
        raise UserError(f"{source}: {where}: {key!r} cannot be swept (a point's name comes from its values)")
    # Mapping-valued keys (env_kwargs) take any sub-key.
    if key in keys or any(key.startswith(k + ".") and keys[k] == "{}" for k in keys):
        return key
    from dqnrun.config import _did_you_mean

    raise UserError(f"{source}: {where}: {key!r} is not a config key{_did_you_mean(key, keys)}; "
                    "see `dqnrun config keys`")


def _as_override(key: str, value: Any) -> str:
    """`key=value` with the value in YAML, as --set takes it."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return f"{key}={text.removesuffix('...').strip()}"


def _read_yaml(path: Path, what: str) -> Any:
    from dqnrun.config import _yaml

    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return _yaml(read_text(path, what))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', None) or 'malformed'}") from None


def _config_path(text: Any, source: Path, where: str) -> Path:
    """A config named in the sweep file: relative to the file's folder, else to the current one."""
    if not isinstance(text, str) or not text:
        raise UserError(f"{source}: {where} must be the path of a config file, got {text!r}")
    for candidate in (source.parent / text, Path(text)):
        if candidate.is_file():
            return candidate
    raise UserError(f"{source}: {where}: config file not found: {text} (looked in {source.parent} and here)")


def load_sweep(
    path: str | Path, overrides: Sequence[str] = (), seeds: Sequence[int] | None = None, name: str | None = None
) -> Sweep:
    """Read and check a sweep file; every point's config is resolved and validated.

    `overrides` (as --set) apply to every point, after the file's own values; `seeds` and `name`
    replace the file's.
    """
    source = Path(path)
    raw = _read_yaml(source, "sweep file")
    if not isinstance(raw, dict):
        raise UserError(f"{source}: a sweep file is a mapping with keys {', '.join(SWEEP_KEYS)}")
    from dqnrun.config import _did_you_mean

    for key in raw:
        if key not in SWEEP_KEYS:
            raise UserError(f"{source}: unknown key {key!r}{_did_you_mean(str(key), SWEEP_KEYS)} "
                            f"(a sweep file has: {', '.join(SWEEP_KEYS)})")
    grid, points = raw.get("grid"), raw.get("points")
    if grid is None and points is None:
        raise UserError(f"{source}: a sweep needs `grid:` (keys to lists of values) and/or `points:` (a list of overrides)")
    sweep_name = name or raw.get("name") or source.stem
    if not isinstance(sweep_name, str) or "/" in sweep_name or sweep_name in (".", ".."):
        raise UserError(f"{source}: name {sweep_name!r} must be a plain directory name")

    common = raw.get("set") or {}
    if not isinstance(common, dict):
        raise UserError(f"{source}: set must be a mapping of config keys to values, e.g. set: {{episodes: 100}}")
    common_overrides = [_as_override(_check_key(k, "set", source), v) for k, v in common.items()]
    if seeds is None and raw.get("seeds") is not None:
        value = raw["seeds"]
        if isinstance(value, list) and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
            seeds = value
        elif isinstance(value, (str, int)) and not isinstance(value, bool):
            seeds = parse_seeds(str(value), option=f"{source}: seeds")
        else:
            raise UserError(f"{source}: seeds must be a list of integers or a range such as 1-5, got {value!r}")

    combos: list[dict[str, Any]] = [{}]
    if grid is not None:
        if not isinstance(grid, dict) or not grid:
            raise UserError(f"{source}: grid must map config keys to lists of values, "
                            "e.g. grid: {agent.learning_rate: [0.0005, 0.001]}")
        for key, values in grid.items():
            _check_key(key, "grid", source)
            if not isinstance(values, list) or not values:
                raise UserError(f"{source}: grid: {key} must be a non-empty list of values, e.g. [{values!r}]"
                                if not isinstance(values, list) else f"{source}: grid: {key} has no values")
            twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
            if twice is not None:  # 0.001 and 1.0e-3 too: the same point, trained twice
                raise UserError(f"{source}: grid: {key} lists {twice!r} twice; remove one")
            if key in common:  # the grid's values would silently win
                raise UserError(f"{source}: {key} is both in set: and in grid:; keep it in one of them")
        combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    explicit: list[dict[str, Any]] = [{}]
    if points is not None:
        if not isinstance(points, list) or not points or not all(isinstance(p, dict) for p in points):
            raise UserError(f"{source}: points must be a non-empty list of mappings, e.g. "
                            "points: [{config: configs/dqn.yaml}, {variant: per}]")
        for i, point in enumerate(points, 1):
            for key in point:
                if key not in ("config", "name"):
                    _check_key(key, f"point {i}", source)
        explicit = points

    if raw.get("base") is not None:
        base = _config_path(raw["base"], source, "base")
    else:
        base = None
    specs = []  # (explicit name or None, values in order, base path)
    for i, point in enumerate(explicit, 1):
        point_base = _config_path(point["config"], source, f"point {i}: config") if "config" in point else base
        if point_base is None:
            raise UserError(f"{source}: point {i} has no `config:` and the sweep has no `base:`")
        for combo in combos:
            values = {k: v for k, v in point.items() if k != "name"}
            values.update(combo)
            specs.append((point.get("name"), values, point_base))

    swept = _swept([values for _, values, _ in specs])
    names = _names([(given, {k: values[k] for k in swept if k in values}) for given, values, _ in specs], source)
    built = []
    for point_name, (given, values, point_base) in zip(names, specs):
        extra = [*common_overrides, *(_as_override(k, v) for k, v in values.items() if k != "config"),
                 *overrides, f"name={point_name}"]
        if seeds is not None:
            extra.append(f"seeds=[{', '.join(str(int(s)) for s in seeds)}]")
        try:
            config = load_config(point_base, extra)
        except UserError as exc:
            raise UserError(f"{source}: point {point_name!r}: {exc}") from None
        built.append(Point(point_name, {k: values[k] for k in swept if k in values}, config))
    return Sweep(sweep_name, source, tuple(swept), tuple(built))


def _swept(all_values: list[dict[str, Any]]) -> list[str]:
    """Keys whose values differ between points (all keys of a single point), `config` first."""
    keys = list(dict.fromkeys(k for values in all_values for k in values))
    keys.sort(key=lambda k: k != "config")  # the base config first, then file order
    if len(all_values) == 1:
        return keys
    return [k for k in keys if len({repr(v.get(k)) for v in all_values}) > 1]


def _label(key: str, value: Any) -> str:
    last = key.rsplit(".", 1)[-1]
    if key in VALUE_ONLY:
        return Path(value).stem if key == "config" else str(value)
    if isinstance(value, bool):
        return last if value else f"no-{last}"
    short = SHORT.get(last, last)
    if isinstance(value, (list, tuple)):
        value = "x".join(map(str, value))
    return f"{short}{value}"


def safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._+=-]+", "_", text).strip("._-")[:100]
    return name or "point"


def _names(points: list[tuple[str | None, dict[str, Any]]], source: Path) -> list[str]:
    """Directory names: given ones, else built from the swept values; unique."""
    names: list[str] = []
    for given, values in points:
        if given is not None:
            if not isinstance(given, str) or safe_name(given) != given:
                raise UserError(f"{source}: point name {given!r} must be a plain name (letters, digits, . _ - + =)")
            if given in names:
                raise UserError(f"{source}: two points are named {given!r}")
            names.append(given)
            continue
        base = safe_name("-".join(_label(k, v) for k, v in values.items()) or "base")
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------
# The sweep directory


@dataclass(frozen=True)
class ManifestPoint:
    name: str
    values: dict[str, Any]
    run_dir: Path


@dataclass(frozen=True)
class Manifest:
    """A sweep directory as its manifest describes it."""

    name: str
    path: Path  # the sweep directory
    swept: tuple[str, ...]
    points: tuple[ManifestPoint, ...]


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def find_sweeps(root: str | Path) -> list[Path]:
    """Sweep directories directly under `root` (each holds its points' run directories)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [p for p in sorted(root.iterdir()) if not p.name.startswith(".") and p.is_dir() and is_sweep_dir(p)]


def write_manifest(sweep_dir: Path, sweep: Sweep) -> None:
    data = {
        "format": SWEEP_FORMAT,
        "name": sweep.name,
        "source": str(sweep.source),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "swept": list(sweep.swept),
        "points": [{"name": p.name, "values": p.values, "seeds": list(p.config.seeds)} for p in sweep.points],
    }
    write_text(sweep_dir / MANIFEST, yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, default_flow_style=None,
                                               width=120))


class _PlainDumper(yaml.SafeDumper):
    """Writes a value shared by several points (a grid's list) out each time, never as an alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


MANIFEST_NODES = 1_000_000  # values in a manifest, counting every use of a YAML alias


def _walk_fits(value: Any, budget: int = MANIFEST_NODES) -> bool:
    """Whether walking `value` visits at most `budget` values. A manifest from elsewhere may use
    YAML aliases: a few hundred bytes of them nest into a structure that anything printing or
    comparing the swept values would walk for ever (the "billion laughs"), or that holds itself."""
    stack = [value]
    while stack:
        budget -= 1
        if budget < 0:
            return False
        item = stack.pop()
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
    return True


def load_manifest(path: str | Path) -> Manifest:
    """The points of a sweep directory with their swept values and run directories.

    The manifest is read with a safe YAML loader and checked; anything else is a UserError.
    """
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise UserError(f"{path} is not a sweep directory (no {MANIFEST}); run one with `dqnrun sweep SWEEP.yaml`")
    text = read_text(file, "sweep manifest")  # a regular file of at most 1 MiB, as a config
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError):
        raise UserError(f"{file} is damaged: not a readable sweep manifest") from None
    if not _walk_fits(data):
        raise UserError(f"{file} is damaged: it expands to more than {MANIFEST_NODES:,} values (YAML aliases?)")
    points = data.get("points") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != SWEEP_FORMAT or not isinstance(points, list):
        raise UserError(f"{file} is not a dqnrun sweep manifest")
    out = []
    for p in points:
        name = p.get("name") if isinstance(p, dict) else None
        values = p.get("values") if isinstance(p, dict) else None
        if not isinstance(name, str) or safe_name(name) != name or not isinstance(values, dict):
            raise UserError(f"{file} is damaged: a point has no valid name and values")
        out.append(ManifestPoint(name, values, path / name))
    swept = data.get("swept") or []
    if not isinstance(swept, list):
        raise UserError(f"{file} is damaged: swept is not a list")
    return Manifest(str(data.get("name", path.name)), path, tuple(map(str, swept)), tuple(out))


def expand_runs(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """RUN arguments with each sweep directory replaced by its finished points' run directories,
    and a note per sweep naming the points left out because they are not finished (yet)."""
    out: list[str] = []
    notes: list[str] = []
    for arg in args:
        if not is_sweep_dir(arg):
            out.append(arg)
            continue
        points = load_manifest(arg).points
        done = [p for p in points if RunDir(p.run_dir).is_finished()]
        if not done:
            raise UserError(f"{arg} has no finished point yet; `dqnrun list {arg}` shows its progress")
        waiting = [p.name for p in points if p not in done]
        if waiting:
            shown = ", ".join(waiting[:4]) + (", ..." if len(waiting) > 4 else "")
            notes.append(f"not included: {len(waiting)} of {len(points)} points of {arg} are not finished "
                         f"({shown}); `dqnrun list {arg}` shows their progress")
        out += [str(p.run_dir) for p in done]
    return out, notes


def swept_values(run_dir: str | Path) -> dict[str, Any] | None:
    """The swept values of a run that is a point of a sweep (None for a run of its own)."""
    run_dir = Path(run_dir)
    if not is_sweep_dir(run_dir.parent):
        return None
    try:
        manifest = load_manifest(run_dir.parent)
    except UserError:
        return None
    for p in manifest.points:
        if p.name == run_dir.name:
            return {k: p.values.get(k) for k in manifest.swept}
    return None


def swept_columns(run_dirs: Sequence[str | Path]) -> dict[str, dict[str, str]]:
    """For runs that are sweep points: swept key -> {run dir as given -> value as text}."""
    columns: dict[str, dict[str, str]] = {}
    for run_dir in run_dirs:
        values = swept_values(run_dir) if Path(run_dir).is_dir() else None
        for key, value in (values or {}).items():
            text = Path(value).stem if key == "config" and isinstance(value, str) else str(value)
            columns.setdefault(key, {})[str(run_dir)] = text
    return columns


# ---------------------------------------------------------------------------------------------
# Running a sweep


@dataclass
class SweepPlan:
    sweep_dir: Path
    manifest: Manifest
    runs: list[Any]  # experiment.RunPlan per point with seeds to train
    finished: list[str]  # points already complete
    jobs: int
    notes: list[str]


def seed_budget(c: Config) -> tuple[str, int | None, bool]:
    """One seed's budget in words ("500,000 env steps" where `max_steps` binds, else "250
    episodes"), its upper bound on env steps (None: unbounded), and whether `max_steps` binds."""
    from dqnrun.envs import env_info

    limit = env_info(c.env, c.env_kwargs, c.wrappers).max_episode_steps
    by_episodes = c.episodes * limit if limit else None
    bound = min((x for x in (c.max_steps, by_episodes) if x is not None), default=None)
    if c.max_steps is not None and (by_episodes is None or c.max_steps < by_episodes):
        return f"{c.max_steps:,} env steps", bound, True  # episodes is only a bound
    return f"{c.episodes:,} episode{'' if c.episodes == 1 else 's'}", bound, False


def budget(sweep: Sweep) -> dict[str, Any]:
    """What the sweep will train: runs, episodes and an upper bound on env steps."""
    episodes = steps = 0
    bounded = True
    per_point = {}  # point name -> its budget per seed, as words
    for p in sweep.points:
        c = p.config
        n = len(c.seeds)
        per_point[p.name], per_seed, by_steps = seed_budget(c)
        if not by_steps:
            episodes += n * c.episodes
        if per_seed is None:
            bounded = False
        else:
            steps += n * per_seed
    return {"points": len(sweep.points), "runs": sweep.seeds, "episodes": episodes,
            "env_steps": steps if bounded else None, "per_seed": per_point}


def start_sweep(
    path: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    name: str | None = None,
    out: str | Path = "results",
    force: bool = False,
    resume: str | Path | None = None,
    jobs: int | None = None,
    device: str = "auto",
    scheduler: str | None = None,
) -> SweepPlan:
    """Check the whole sweep, then claim `out/<sweep>/` with one run directory per point (or
    reopen an interrupted sweep directory with `resume`)."""
    from dqnrun import experiment

    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    if scheduler is not None:
        from dqnrun.workers import check_scheduler

        check_scheduler(scheduler, jobs)
    notes: list[str] = []
    if resume is not None:
        sweep_dir = Path(resume)
        if not is_sweep_dir(sweep_dir):
            if not sweep_dir.exists() and not sweep_dir.is_symlink():
                raise UserError(f"no such directory: {sweep_dir}")
            if RunDir(sweep_dir).config_file.is_file():
                raise UserError(f"{sweep_dir} is a run, not a sweep; continue it with `dqnrun train --resume {sweep_dir}`")
            raise UserError(f"{sweep_dir} is not a sweep directory (no {MANIFEST}); "
                            "start one with `dqnrun sweep SWEEP.yaml`")
        manifest = load_manifest(sweep_dir)
    else:
        if path is None:
            raise UserError("missing SWEEP: e.g. `dqnrun sweep sweeps/lecture.yaml` (or --resume SWEEP_DIR)")
        sweep = load_sweep(path, overrides, seeds, name)
        for p in sweep.points:  # the environment and the memory, before anything is written
            experiment.plan(p.config, jobs)
        experiment.resolve_device(device)
        sweep_dir, note = claim_run_dir(out, sweep.name, force=force)
        if note:
            notes.append(note)
        for p in sweep.points:
            write_text(RunDir(sweep_dir / p.name).config_file, p.config.to_yaml())
        write_manifest(sweep_dir, sweep)
        manifest = load_manifest(sweep_dir)
    runs, finished = [], []
    for p in manifest.points:
        files = RunDir(p.run_dir)
        if not files.config_file.is_file():
            raise UserError(f"{p.run_dir} (a point of {sweep_dir}) has no config.yaml; the sweep is damaged")
        config = load_config(files.config_file)
        if files.is_finished() and not files.pending_seeds(config.seeds):
            finished.append(p.name)
            continue
        runs.append(experiment.start_run(resume=p.run_dir, jobs=jobs, device=device, scheduler=scheduler))
    if resume is not None and not runs:
        raise UserError(f"{sweep_dir} is already complete; nothing to resume")
    pending = sum(len(r.todo) for r in runs)
    n_jobs = max(1, min(jobs or experiment.default_jobs(pending), pending or 1))
    return SweepPlan(sweep_dir, manifest, runs, finished, n_jobs, notes)


def execute_sweep(plan: SweepPlan, on_event: Callable[[str, Any], None] | None = None) -> list[Any]:
    """Train every point's pending seeds in one pool; returns each run's experiment.Outcome."""
    from dqnrun import experiment

    def handle(run_plan: Any, event: Any) -> None:
        if on_event is not None:
            on_event(run_plan.run_dir.name, event)

    with RunDir(plan.sweep_dir).training():  # the sweep's own marker, set when it was claimed, goes at the end
        return experiment.execute_many(plan.runs, handle, jobs=plan.jobs)
