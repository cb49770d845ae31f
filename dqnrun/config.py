"""Typed, frozen run configuration: YAML loading, variant presets, --set overrides, validation."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dqnrun.errors import UserError
from dqnrun.safeio import read_text


def _doc(text: str, default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A dataclass field with a one-line description (shown by `dqnrun config keys`)."""
    if isinstance(default, (list, dict)):
        raise TypeError("use an immutable default")
    return field(default=default, metadata={"doc": text}, **kwargs)


@dataclass(frozen=True)
class AgentConfig:
    gamma: float = _doc("discount factor, in [0, 1]", 1.0)
    learning_rate: float = _doc("optimizer step size", 0.001)
    optimizer: str = _doc("rmsprop (the lecture's) or adam", "rmsprop")
    optimizer_eps: float = _doc("the optimizer's epsilon, added to the denominator (RMSprop and Adam; torch's 1e-8)", 1e-8)
    rmsprop_alpha: float = _doc("RMSprop's smoothing constant for the running average of squared gradients", 0.99)
    rmsprop_centered: bool = _doc(
        "centred RMSprop (Graves 2013): divide by the gradient's running standard deviation, not the root of "
        "its second moment", False
    )
    batch_size: int = _doc("transitions per update", 64)
    memory_size: int = _doc("replay capacity (transitions)", 50_000)
    memory_start_size: int = _doc("updates start once the replay holds more than this", 320)
    target_update_steps: int = _doc("env steps between target-network updates", 15)
    tau: float = _doc("target update factor: 1.0 = hard copy, < 1 = Polyak averaging", 1.0)
    double: bool = _doc("Double DQN target: online argmax, target value", True)
    dueling: bool = _doc("dueling head: Q = V + (A - mean A)", False)
    prioritized: bool = _doc("prioritized replay on a sum tree", False)
    n_step: int = _doc("multi-step returns: rewards summed over n steps before bootstrapping", 1)
    noisy: bool = _doc("NoisyNet head: factorised Gaussian noisy linear layers (explore without epsilon)", False)
    noisy_sigma0: float = _doc("NoisyNet's sigma_0: initial noise scale, sigma = sigma_0 / sqrt(inputs)", 0.5)
    distributional: bool = _doc("C51: a categorical return distribution over `atoms` fixed values", False)
    atoms: int = _doc("C51: number of atoms of the support", 51)
    v_min: float = _doc("C51: smallest value of the support", -10.0)
    v_max: float = _doc("C51: largest value of the support", 10.0)
    loss: str = _doc("mse or huber (on the TD error; C51 always uses the cross-entropy)", "mse")
    huber_delta: float = _doc("Huber loss: quadratic for |TD error| <= delta, linear beyond", 1.0)
    max_grad_norm: typing.Optional[float] = _doc("clip the gradient to this global L2 norm (null: no clipping)", None)
    train_freq: int = _doc("env steps between updates", 1)
    gradient_steps: int = _doc("gradient updates each time", 1)


@dataclass(frozen=True)
class EpsilonConfig:
    max: float = _doc("exploration rate at step 0", 1.0)
    min: float = _doc("exploration rate after decay_steps", 0.3)
    decay_steps: int = _doc("env steps of the decay", 20_000)
    schedule: str = _doc("log (the lecture's log-space decay) or linear (SB3's and RL Zoo's)", "log")


@dataclass(frozen=True)
class PerConfig:
    alpha: float = _doc("priority exponent: 0 = uniform, 1 = fully prioritized", 0.5)
    beta: float = _doc("importance-sampling exponent at the start", 0.4)
    beta_end: float = _doc("importance-sampling exponent at the end of annealing", 1.0)
    beta_steps: typing.Optional[int] = _doc(
        "env steps over which beta anneals; null = over the whole run", None
    )
    eps: float = _doc("added to |TD error| so no priority is zero", 1e-6)


@dataclass(frozen=True)
class NetworkConfig:
    type: str = _doc(
        "trunk: mlp (flat vectors), cnn (images), auto (cnn for 2-D and larger observations, else mlp)", "auto"
    )
    hidden: tuple[int, ...] = _doc("hidden layer sizes of the MLP", (512, 128))
    cnn: str = _doc(
        "convolutions for type cnn: nature (Mnih et al. 2015, 84x84 frames), minatar (Young and Tian 2019, "
        "10x10 grids), auto (nature for images of 36 pixels a side or more, else minatar)", "auto"
    )


@dataclass(frozen=True)
class LoggingConfig:
    tensorboard: bool = _doc("write TensorBoard event files under <run>/tb/ (needs dqnrun[tensorboard])", False)


@dataclass(frozen=True)
class SpeedConfig:
    flush_denormal: bool = _doc(
        "flush denormal floats to zero on the CPU (the optimizers already avoid their slowest case, the square "
        "root, exactly); the numbers differ from a run without it", False,
    )
    vectorize: int = _doc(
        "train K seeds in one process with stacked networks and batched updates (groups of K consecutive "
        "seeds); 1 = one seed per process. Numbers may differ from 1 in the last bits", 1,
    )


@dataclass(frozen=True)
class Config:
    name: str = _doc("run directory name (default: the config file's stem)")
    variant: str = _doc("preset: dqn | ddqn | per | dueling | rainbow")
    env: str = _doc(
        "Gymnasium id with a Box observation and a Discrete action space; module:EnvId imports module first",
        "CartPole-v1",
    )
    env_kwargs: dict[str, typing.Any] = field(
        default_factory=dict, metadata={"doc": "keyword arguments for gym.make (e.g. {frameskip: 1})"}
    )
    wrappers: tuple[dict[str, typing.Any], ...] = _doc(
        "Gymnasium wrappers applied in order, each {name: Wrapper, argument: value} or a plain name", ()
    )
    seeds: tuple[int, ...] = _doc("one independent run per seed", (12, 34, 56, 78, 90))
    episodes: int = _doc("training episodes per seed", 250)
    max_steps: typing.Optional[int] = _doc("stop a seed after this many env steps (null: no limit)", None)
    eval_episodes: int = _doc("greedy episodes after every training episode (0: curve = training return)", 5)
    eval_every_steps: typing.Optional[int] = _doc(
        "evaluate every N env steps instead of after every episode (null: after every episode)", None
    )
    window: int = _doc("sliding-window smoothing of the curves", 25)
    checkpoint_every: int = _doc("episodes between resumable checkpoints (0: none)", 25)
    agent: AgentConfig = _doc("learning algorithm", AgentConfig())
    epsilon: EpsilonConfig = _doc("epsilon-greedy exploration", EpsilonConfig())
    per: PerConfig = _doc("prioritized replay (used when agent.prioritized)", PerConfig())
    network: NetworkConfig = _doc("Q-network", NetworkConfig())
    logging: LoggingConfig = _doc("what is logged while training (changes no number)", LoggingConfig())
    speed: SpeedConfig = _doc("how the numbers are computed, where that trades exactness for speed", SpeedConfig())

    @property
    def smoothing_window(self) -> int:
        """The window the curves are smoothed with: `window`, shrunk to fit a shorter run."""
        return min(self.window, self.episodes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) that `load_config` reads back to an equal Config."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)


# Presets set the defaults of the independent switches; the config may override any of them.
# The dueling preset follows the lecture's dueling experiment: Polyak tau 0.01 on every step.
# The rainbow preset turns on all six components of Hessel et al. (2018); its hyperparameters
# (target period, support, ...) are in configs/rainbow.yaml with their sources.
_LECTURE = dict(n_step=1, noisy=False, distributional=False)
PRESETS: dict[str, dict[str, Any]] = {
    "dqn": dict(double=False, prioritized=False, dueling=False, tau=1.0, target_update_steps=15, **_LECTURE),
    "ddqn": dict(double=True, prioritized=False, dueling=False, tau=1.0, target_update_steps=15, **_LECTURE),
    "per": dict(double=True, prioritized=True, dueling=False, tau=1.0, target_update_steps=15, **_LECTURE),
    "dueling": dict(double=True, prioritized=False, dueling=True, tau=0.01, target_update_steps=1, **_LECTURE),
    "rainbow": dict(double=True, prioritized=True, dueling=True, tau=1.0, target_update_steps=100,
                    n_step=3, noisy=True, distributional=True),
}
OPTIMIZERS = ("rmsprop", "adam")
NETWORK_TYPES = ("auto", "mlp", "cnn")
EPSILON_SCHEDULES = ("log", "linear")
CNN_STACKS = ("auto", "nature", "minatar")
LOSSES = ("mse", "huber")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Loading


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (YAML 1.1 wants `1.0e-3`), refuses aliases
    and duplicate keys.

    Aliases (`*name`) are refused: a few hundred bytes of nested aliases expand to millions of
    nodes in anything that walks the result (the "billion laughs"), and a config never needs
    them. A key written twice in one mapping is an error naming it, not "the last one wins".
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not supported in a config; write the value out",
                event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # SafeConstructor reports unhashable keys and merges `<<` mappings
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {str(key)[:60]!r} (first at line {seen[key] + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml(text: str) -> Any:
    """Parse YAML text; nesting deeper than Python's recursion limit, or integers longer than
    its 4,300 digits, are YAMLErrors like any other malformed input."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # e.g. int("1" * 5000), a date 2024-13-45
        raise yaml.YAMLError(f"a value cannot be read ({str(exc)[:80]})") from None


def load_config(path: str | Path, overrides: typing.Sequence[str] = (), name: str | None = None) -> Config:
    """Read a YAML config, apply `key.sub=value` overrides, fill preset defaults, validate.

    `name` (from --name) is taken as it is, never parsed as YAML: `--name 2024` names a run
    "2024".
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"config file not found: {path}")
    text = read_text(path, "config file")
    try:
        raw = _yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or (str(exc) if type(exc) is yaml.YAMLError else "malformed YAML")
        raise UserError(f"{path}: invalid YAML{where}: {problem}") from None
    if raw is None:
        raise UserError(f"{path}: the file is empty; a config needs at least `variant:` (see configs/)")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a config is a YAML mapping of keys, not a {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    if isinstance(overrides, str):
        overrides = [overrides]
    changes = [(f"with {item}", [item], None) for item in overrides]
    if name is not None:
        changes.append((f"with name {name!r}", [], name))
    try:
        return config_from_dict(_changed(raw, changes), source=str(path))
    except UserError as exc:
        problem = str(exc)[len(str(path)):] if str(exc).startswith(str(path)) else None
        if not changes or problem is None:
            raise
        # Blame what broke a valid file rather than the file: the first change after which the
        # config fails, or the changes together when that change's failure is another.
        for i in range(len(changes) + 1):
            try:
                config_from_dict(_changed(raw, changes[:i]), source=str(path))
            except UserError as first:
                if i == 0:
                    raise exc from None
                culprit = changes[i - 1][0] if str(first) == str(exc) else "with its overrides"
                raise UserError(f"{path} {culprit}{problem}") from None
        raise


def _changed(raw: dict[str, Any], changes: list[tuple[str, list[str], str | None]]) -> dict[str, Any]:
    """`raw` with each change's overrides applied, and its name if it sets one."""
    out = apply_overrides(raw, [item for _, items, _ in changes for item in items])
    for _, _, name in changes:
        if name is not None:
            out["name"] = name
    return out


def apply_overrides(raw: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `dotted.key=value` set (values parsed as YAML)."""
    out = _copy_tree(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set agent.learning_rate=0.0005")
        try:
            value = _yaml(text) if text.strip() else None
        except yaml.YAMLError:
            raise UserError(f"--set {item!r}: the value is not valid YAML") from None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise UserError(f"--set {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _copy_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_tree(v) for v in value]
    return value


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    """Build and validate a Config from a plain dict (as read from YAML)."""
    raw = _copy_tree(raw)
    variant = raw.get("variant")
    if variant is None:
        raise UserError(f"{source}: missing key 'variant' (one of: {', '.join(PRESETS)})")
    if not isinstance(variant, str) or variant not in PRESETS:
        hint = _did_you_mean(str(variant), PRESETS)
        raise UserError(f"{source}: unknown variant {_show(variant)}{hint} (one of: {', '.join(PRESETS)})")
    if "name" not in raw:
        raw["name"] = variant
    agent = raw.get("agent")
    if agent is None:
        agent = raw["agent"] = {}
    if isinstance(agent, dict):
        for key, value in PRESETS[variant].items():
            agent.setdefault(key, value)
    config = _build(Config, raw, source, prefix="")
    _validate(config, source)
    return config


def closest_key(word: str, choices: typing.Iterable[str]) -> str | None:
    """The choice `word` most likely meant: one whose last dotted part it abbreviates by initials
    (`agent.lr` -> `agent.learning_rate`, `bs` -> `batch_size`), else the closest spelling."""
    choices = list(choices)
    head, _, last = word.rpartition(".")
    initials = [c for c in choices if c.rpartition(".")[0] == head and len(last) > 1
                and "".join(w[:1] for w in c.rpartition(".")[2].split("_")) == last]
    if len(initials) == 1:
        return initials[0]
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = closest_key(word, choices)
    return f" (did you mean {close!r}?)" if close else ""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        plural = {int: "integers", float: "numbers", bool: "true/false values", str: "strings"}
        item = typing.get_args(tp)[0]
        return f"a list of {plural.get(item) or _type_name(item)}"
    if dataclasses.is_dataclass(tp) or origin is dict:
        return "a section (mapping)"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against the annotation `tp`; return it in its typed form."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key, source)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{source}: {key} must be a section (mapping), got {_show(value)}")
        return _build(tp, value, source, prefix=key + ".")
    if origin is dict:
        if value is None:
            return {}
        if key.startswith("wrappers[") and isinstance(value, str):
            value = {"name": value}  # a wrapper without arguments may be given by its name alone
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise UserError(f"{source}: {key} must be a mapping of names to values, got {value!r}")
        if key.startswith("wrappers[") and not isinstance(value.get("name"), str):
            raise UserError(f"{source}: {key} needs a wrapper name, e.g. {{name: FlattenObservation}}, got {value!r}")
        return _copy_tree(value)
    if origin is tuple:
        if value is None and key == "wrappers":
            value = []
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list):
            raise UserError(f"{source}: {key} must be {_type_name(tp)}, got {_show(value)}")
        inner = typing.get_args(tp)[0]
        return tuple(_convert(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value))
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise UserError(f"{source}: {key} must be {_type_name(tp)}, got {_show(value)}")
    if tp is float:
        try:
            value = float(value)
        except OverflowError:  # an integer beyond the float range
            value = math.inf
        if not math.isfinite(value):
            raise UserError(f"{source}: {key} must be a finite number, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    """A value from the user's file for a one-line message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _build(cls: Any, raw: dict[str, Any], source: str, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            hint = _did_you_mean(f"{prefix}{key}", [prefix + n for n in names])
            raise UserError(f"{source}: unknown key {prefix + str(key)!r}{hint}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            kwargs[f.name] = _convert(raw[f.name], hints[f.name], prefix + f.name, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"{source}: missing key {prefix}{f.name!r}")
    return cls(**kwargs)


# Upper bounds, checked before anything is allocated. Each is far above any published DQN
# setting (Nature DQN: replay 1M, 50M frames; Rainbow: 200M frames) yet small enough that a
# typo cannot ask for terabytes: the replay is further checked against free memory in
# experiment.plan, the network's parameter count there too.
MAX_SEEDS = 1_000  # one process-run each; results hold seeds x episodes arrays
MAX_EPISODES = 1_000_000  # per seed: seven numbers each in memory and in the result files
MAX_ENV_STEPS = 10**11  # max_steps, decay_steps, beta_steps, target_update_steps: counters only
MAX_EVAL_EPISODES = 1_000  # environments kept open at once for the batched evaluation
MAX_MEMORY = 100_000_000  # replay transitions (100x Nature DQN's)
MAX_BATCH = 65_536
MAX_LAYERS = 32
MAX_WIDTH = 65_536  # units per hidden layer; the parameter count is capped in experiment.plan
MAX_NAME = 100  # characters; file systems take 255 bytes, and plot names join two run names
# n-step returns: Rainbow uses n = 3, R2D2 5; the trainer keeps n observations pending outside
# the replay and sums n rewards per step in Python, so n is capped absolutely and by the replay
# (n <= memory_size keeps those pending copies within what the memory check allowed).
MAX_N_STEP = 1_000
# Updates: published settings train every 1-16 env steps with 1-8 gradient steps. Past 10,000 a
# train_freq barely trains at all, and 10,000 gradient steps are already minutes between two env
# steps on a CPU; a typo beyond (gradient_steps 1e9) would hang silently at the first update.
MAX_TRAIN_FREQ = 10_000
MAX_GRADIENT_STEPS = 10_000
# C51's projection (agent.categorical_projection) is a dense batch x atoms x atoms product: 2**28
# float32 numbers is 1 GiB per update (C51 and Rainbow: 32 x 51 x 51, about 83,000).
MAX_PROJECTION = 2**28
_NAME_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_name(name: str, what: str = "name") -> str | None:
    """Why `name` cannot be a run directory's name, or None if it can."""
    if not name or name in (".", "..") or name.startswith("."):
        return f"{what} {_show(name)} must be a plain directory name (not empty, not starting with '.')"
    if _NAME_FORBIDDEN.search(name):
        return f"{what} {_show(name)} must be a plain directory name (no '/', '\\' or control characters)"
    if len(name) > MAX_NAME or len(name.encode("utf-8")) > 4 * MAX_NAME:
        return f"{what} is {len(name)} characters long; keep it to {MAX_NAME}"
    return None


def _validate(c: Config, source: str) -> None:
    a, e, p = c.agent, c.epsilon, c.per
    defaults = AgentConfig()
    rmsprop_only = [f"agent.{key}" for key in ("rmsprop_alpha", "rmsprop_centered")
                    if getattr(a, key) != getattr(defaults, key)]
    bad_name = check_name(c.name)
    rules: list[tuple[bool, str]] = [
        (bad_name is None, bad_name or ""),
        (len(c.env) <= 200, f"env is {len(c.env)} characters long; that is not an environment id"),
        (len(c.seeds) > 0, "seeds must list at least one seed"),
        (len(c.seeds) <= MAX_SEEDS, f"seeds lists {len(c.seeds)} seeds; at most {MAX_SEEDS:,} per run"),
        (c.episodes <= MAX_EPISODES, f"episodes must be <= {MAX_EPISODES:,}, got {c.episodes:,}"),
        (c.max_steps is None or c.max_steps <= MAX_ENV_STEPS, f"max_steps must be <= {MAX_ENV_STEPS:.0e}"),
        (c.eval_episodes <= MAX_EVAL_EPISODES,
         f"eval_episodes must be <= {MAX_EVAL_EPISODES:,} (they run as one batch), got {c.eval_episodes:,}"),
        (c.checkpoint_every <= MAX_EPISODES, f"checkpoint_every must be <= {MAX_EPISODES:,}"),
        (a.memory_size <= MAX_MEMORY, f"agent.memory_size must be <= {MAX_MEMORY:,}, got {a.memory_size:,}"),
        (a.batch_size <= MAX_BATCH, f"agent.batch_size must be <= {MAX_BATCH:,}, got {a.batch_size:,}"),
        (a.target_update_steps <= MAX_ENV_STEPS, f"agent.target_update_steps must be <= {MAX_ENV_STEPS:.0e}"),
        (e.decay_steps <= MAX_ENV_STEPS,
         f"epsilon.decay_steps must be <= {MAX_ENV_STEPS:.0e}, got {e.decay_steps:.3g}"),
        (p.beta_steps is None or p.beta_steps <= MAX_ENV_STEPS, f"per.beta_steps must be <= {MAX_ENV_STEPS:.0e}"),
        (len(c.network.hidden) <= MAX_LAYERS,
         f"network.hidden lists {len(c.network.hidden)} layers; at most {MAX_LAYERS}"),
        (all(h <= MAX_WIDTH for h in c.network.hidden),
         f"network.hidden layers must be at most {MAX_WIDTH:,} units wide, got {max(c.network.hidden, default=0):,}"),
        (len(set(c.seeds)) == len(c.seeds), f"seeds {list(c.seeds)} contain duplicates"),
        (all(0 <= s < 2**32 for s in c.seeds), "seeds must be in [0, 2**32)"),
        (c.episodes >= 1, f"episodes must be >= 1, got {c.episodes}"),
        (c.max_steps is None or c.max_steps >= 1, f"max_steps must be >= 1 or null, got {c.max_steps}"),
        (c.eval_episodes >= 0, f"eval_episodes must be >= 0, got {c.eval_episodes}"),
        (c.window >= 1, f"window must be >= 1, got {c.window}"),
        (c.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {c.checkpoint_every}"),
        (0.0 <= a.gamma <= 1.0, f"agent.gamma must be in [0, 1], got {a.gamma}"),
        (a.learning_rate > 0, f"agent.learning_rate must be > 0, got {a.learning_rate}"),
        (a.optimizer in OPTIMIZERS,
         f"agent.optimizer {a.optimizer!r} is unknown{_did_you_mean(a.optimizer, OPTIMIZERS)} "
         f"(one of: {', '.join(OPTIMIZERS)})"),
        (a.optimizer_eps > 0, f"agent.optimizer_eps must be > 0, got {a.optimizer_eps}"),
        (0.0 < a.rmsprop_alpha < 1.0, f"agent.rmsprop_alpha must be in (0, 1), got {a.rmsprop_alpha}"),
        (a.optimizer == "rmsprop" or not rmsprop_only,
         f"{' and '.join(rmsprop_only)} {'is' if len(rmsprop_only) == 1 else 'are'} RMSprop's, but agent.optimizer "
         f"is {a.optimizer!r}: remove {'it' if len(rmsprop_only) == 1 else 'them'} or use optimizer: rmsprop"),
        (a.batch_size >= 1, f"agent.batch_size must be >= 1, got {a.batch_size}"),
        (a.memory_size >= 1, f"agent.memory_size must be >= 1, got {a.memory_size}"),
        (a.batch_size <= a.memory_size,
         f"agent.batch_size ({a.batch_size}) is larger than agent.memory_size ({a.memory_size})"),
        (a.memory_start_size >= 0, f"agent.memory_start_size must be >= 0, got {a.memory_start_size}"),
        (a.memory_start_size < a.memory_size,
         f"agent.memory_start_size ({a.memory_start_size}) must be below agent.memory_size "
         f"({a.memory_size}), or training never starts"),
        (a.target_update_steps >= 1, f"agent.target_update_steps must be >= 1, got {a.target_update_steps}"),
        (0.0 < a.tau <= 1.0, f"agent.tau must be in (0, 1], got {a.tau}"),
        (0.0 <= e.min <= e.max <= 1.0,
         f"epsilon needs 0 <= min <= max <= 1, got min {e.min} and max {e.max}"),
        (e.decay_steps >= 1, f"epsilon.decay_steps must be >= 1, got {e.decay_steps}"),
        (a.n_step >= 1, f"agent.n_step must be >= 1 (1 = one-step targets), got {a.n_step}"),
        (a.n_step <= min(MAX_N_STEP, a.memory_size),
         f"agent.n_step must be at most {MAX_N_STEP:,} and at most agent.memory_size ({a.memory_size:,}), "
         f"got {a.n_step:,} (Rainbow uses 3)"),
        (a.noisy_sigma0 > 0, f"agent.noisy_sigma0 must be > 0, got {a.noisy_sigma0}"),
        (a.atoms >= 2, f"agent.atoms must be >= 2, got {a.atoms}"),
        (not a.distributional or a.batch_size * a.atoms**2 <= MAX_PROJECTION,
         f"agent.atoms {a.atoms:,} with agent.batch_size {a.batch_size:,}: C51's projection holds batch x atoms^2 "
         f"= {a.batch_size * a.atoms**2:,} numbers per update, at most {MAX_PROJECTION:,}; lower agent.atoms "
         "(C51 uses 51)"),
        (a.v_min < a.v_max, f"agent.v_min ({a.v_min}) must be below agent.v_max ({a.v_max})"),
        (a.loss in LOSSES,
         f"agent.loss {a.loss!r} is unknown{_did_you_mean(a.loss, LOSSES)} (one of: {', '.join(LOSSES)})"),
        (not (a.distributional and a.loss != "mse"),
         f"agent.loss {a.loss!r} does not apply with agent.distributional: C51 learns by cross-entropy; "
         "remove agent.loss"),
        (a.huber_delta > 0, f"agent.huber_delta must be > 0, got {a.huber_delta}"),
        (a.max_grad_norm is None or a.max_grad_norm > 0,
         f"agent.max_grad_norm must be > 0 or null, got {a.max_grad_norm}"),
        (a.train_freq >= 1, f"agent.train_freq must be >= 1, got {a.train_freq}"),
        (a.gradient_steps >= 1, f"agent.gradient_steps must be >= 1, got {a.gradient_steps}"),
        (a.train_freq <= MAX_TRAIN_FREQ,
         f"agent.train_freq must be at most {MAX_TRAIN_FREQ:,} env steps between updates, got {a.train_freq:,}"),
        (a.gradient_steps <= MAX_GRADIENT_STEPS,
         f"agent.gradient_steps must be at most {MAX_GRADIENT_STEPS:,} per update, got {a.gradient_steps:,}"),
        (c.eval_every_steps is None or c.eval_every_steps >= 1,
         f"eval_every_steps must be >= 1 or null, got {c.eval_every_steps}"),
        (c.eval_every_steps is None or c.eval_episodes >= 1,
         "eval_every_steps needs eval_episodes >= 1 (the episodes of each evaluation)"),
        (e.schedule in EPSILON_SCHEDULES,
         f"epsilon.schedule {e.schedule!r} is unknown{_did_you_mean(e.schedule, EPSILON_SCHEDULES)} "
         f"(one of: {', '.join(EPSILON_SCHEDULES)})"),
        (p.alpha >= 0, f"per.alpha must be >= 0, got {p.alpha}"),
        (0.0 <= p.beta <= 1.0 and 0.0 <= p.beta_end <= 1.0,
         f"per.beta and per.beta_end must be in [0, 1], got {p.beta} and {p.beta_end}"),
        (p.beta_steps is None or p.beta_steps >= 1, "per.beta_steps must be >= 1 or null"),
        (p.eps > 0, f"per.eps must be > 0 so that every transition can be sampled, got {p.eps}"),
        (len(c.network.hidden) >= 1 and all(h >= 1 for h in c.network.hidden),
         f"network.hidden must list positive layer sizes, got {list(c.network.hidden)}"),
        (c.network.type in NETWORK_TYPES,
         f"network.type {c.network.type!r} is unknown{_did_you_mean(c.network.type, NETWORK_TYPES)} "
         f"(one of: {', '.join(NETWORK_TYPES)})"),
        (c.network.cnn in CNN_STACKS,
         f"network.cnn {c.network.cnn!r} is unknown{_did_you_mean(c.network.cnn, CNN_STACKS)} "
         f"(one of: {', '.join(CNN_STACKS)})"),
    ]
    v = c.speed.vectorize
    rules += [
        (v >= 1, f"speed.vectorize must be >= 1 (1 = one seed per process), got {v}"),
        (v <= MAX_SEEDS, f"speed.vectorize must be <= {MAX_SEEDS:,}, got {v:,}"),
    ]
    for ok, message in rules:
        if not ok:
            raise UserError(f"{source}: {message}")


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """Seeds from `1,2,3`, ranges `1-10` (inclusive) or both, `1-3,7`; in the order given.
    Spaces separate seeds as commas do (`1 2 3`); around a range's dash they are ignored (`1 - 3`)."""
    seeds: list[int] = []
    for part in re.split(r"[,\s]+", re.sub(r"\s*-\s*", "-", text.strip())):
        if not part:
            continue
        first, dash, last = part.partition("-")
        if not (first.isdigit() and (not dash or last.isdigit())):
            raise UserError(f"{option} {text!r}: expected integers and ranges separated by commas or spaces, "
                            f"e.g. {option} 1,2,3 or {option} 1-10")
        lo, hi = int(first), int(last) if dash else int(first)
        if hi < lo:
            raise UserError(f"{option} {text!r}: the range {part} is empty; write it low-high, e.g. {last}-{first}")
        if hi - lo >= 10_000:
            raise UserError(f"{option} {text!r}: the range {part} has more than 10,000 seeds")
        seeds += range(lo, hi + 1)
    if not seeds:
        raise UserError(f"{option} needs at least one seed, e.g. {option} 1,2,3 or {option} 1-5")
    if len(set(seeds)) != len(seeds):
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        raise UserError(f"{option} {text!r}: seed {twice[0]} appears twice")
    return seeds


def config_warnings(c: Config) -> list[str]:
    """Settings that are allowed but probably not meant; the CLI prints each once."""
    notes = []
    if c.agent.noisy and (c.epsilon.max > 0 or c.epsilon.min > 0):
        notes.append(
            f"agent.noisy explores by itself; epsilon-greedy on top (max {c.epsilon.max}, min {c.epsilon.min}) "
            "adds random actions: set epsilon.max and epsilon.min to 0 for NoisyNet alone"
        )
    if c.eval_every_steps is not None and c.max_steps is not None and c.eval_every_steps > c.max_steps:
        notes.append(f"eval_every_steps {c.eval_every_steps:,} > max_steps {c.max_steps:,}: no evaluation will run; "
                     "the best model is never saved")
    return notes


def describe_keys() -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for every config key, for help texts."""
    rows = []

    def walk(cls: Any, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.default):
                walk(type(f.default), prefix + f.name + ".")
                continue
            if f.name == "name":
                default = "the file's stem"
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                default = "required"
            elif f.default is dataclasses.MISSING:
                default = yaml.safe_dump(f.default_factory(), default_flow_style=True).strip()
            elif prefix == "agent." and f.name in PRESETS["dqn"]:
                default = "from the preset"
            else:
                default = yaml.safe_dump(_plain(f.default), default_flow_style=True).strip()
                default = default.removesuffix("...").strip()
            rows.append((prefix + f.name, default, f.metadata.get("doc", "")))

    walk(Config, "")
    return rows
