"""Gymnasium environments from a config: suites, kwargs, wrappers, space checks, thresholds."""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import warnings
from typing import Any, Mapping, NamedTuple, Sequence

import gymnasium as gym
import numpy as np

from dqnrun.errors import UserError

# Suites whose environments Gymnasium does not register by itself: the namespace of their ids,
# the package (and the function) that registers them, and dqnrun's extra that installs it.
SUITES: dict[str, tuple[str, str | None, str]] = {
    "ALE": ("ale_py", None, "atari"),  # ale_py registers its ids when imported; ROMs ship with it
    "MinAtar": ("minatar.gym", "register_envs", "minatar"),
}
# Registered by Gymnasium itself, but their physics needs Box2D.
BOX2D_PREFIXES = ("LunarLander", "BipedalWalker", "CarRacing")

# Wrappers a config may not name: they take a Python function (a config holds data, never code),
# or they belong to Gymnasium's plumbing rather than to the environment.
_CODE_WRAPPERS = {"TransformReward", "TransformObservation", "TransformAction"}
_PLUMBING = {
    "vector", "ArrayConversion", "JaxToNumpy", "JaxToTorch", "NumpyToTorch", "Autoreset",
    "PassiveEnvChecker", "OrderEnforcing", "RecordVideo", "HumanRendering", "RenderCollection",
}


class FrameStack(NamedTuple):
    """How the outermost FrameStackObservation stacks frames: the replay stores each frame once."""

    size: int
    padding: str  # "reset" (the first frame repeated) or "zero"


class EnvInfo(NamedTuple):
    """What the network and the replay need to know about an environment."""

    obs_shape: tuple[int, ...]
    obs_dtype: str
    n_actions: int
    reward_threshold: float | None
    max_episode_steps: int | None
    frame_stack: FrameStack | None = None

    @property
    def obs_dim(self) -> int:
        return math.prod(self.obs_shape)


def install_hint(extra: str) -> str:
    return f'pip install "dqnrun[{extra}]"'


def _load_suite(env_id: str) -> None:
    """Register the suite an id belongs to (ALE/..., MinAtar/...), or say which extra it needs."""
    namespace = env_id.split("/", 1)[0] if "/" in env_id and ":" not in env_id else None
    if namespace not in SUITES:
        return
    module, register, extra = SUITES[namespace]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = importlib.import_module(module)
    except ImportError:
        raise UserError(f"environment {env_id!r} needs the {extra} extra: {install_hint(extra)}") from None
    if register and not any(k.startswith(namespace + "/") for k in gym.registry):
        getattr(mod, register)()
    if namespace == "ALE":  # the emulator's banner on every environment: only its errors, please
        mod.ALEInterface.setLoggerMode(mod.LoggerMode.Error)


def _user_module_error(env_id: str, exc: ImportError) -> UserError:
    module = env_id.split(":", 1)[0]
    return UserError(f"cannot import module {module!r} of environment {env_id!r}: {exc} "
                     "(is it installed, or on PYTHONPATH?)")


def _wrapper_class(name: Any) -> type:
    if not isinstance(name, str):
        raise UserError(f"wrappers: a wrapper is named by a string, got {name!r}")
    if name in _CODE_WRAPPERS:
        raise UserError(
            f"wrapper {name!r} takes a Python function, which a config cannot hold; "
            "for rewards use ClipReward (min_reward, max_reward)"
        )
    allowed = [n for n in gym.wrappers.__all__ if n not in _PLUMBING and n not in _CODE_WRAPPERS]
    if name not in allowed:
        hint = difflib.get_close_matches(name, allowed, n=1, cutoff=0.5)
        did = f" (did you mean {hint[0]!r}?)" if hint else f" (one of: {', '.join(sorted(allowed))})"
        raise UserError(f"unknown wrapper {name!r}{did}")
    try:
        return getattr(gym.wrappers, name)
    except ImportError as exc:  # AtariPreprocessing's opencv, for one
        raise UserError(f"wrapper {name!r} needs a package that is not installed: {exc}") from None


def _arg(value: Any) -> Any:
    """YAML lists become tuples: Gymnasium's shape arguments expect them."""
    if isinstance(value, list):
        return tuple(_arg(v) for v in value)
    return value


def wrapper_entries(wrappers: Sequence[Mapping[str, Any] | str]) -> list[tuple[str, dict[str, Any]]]:
    """(name, arguments) of each `{name: ..., arg: value}` entry (or a bare name)."""
    out = []
    for entry in wrappers:
        args = {"name": entry} if isinstance(entry, str) else dict(entry)
        name = args.pop("name", None)
        out.append((name, {k: _arg(v) for k, v in args.items()}))
    return out


def apply_wrappers(env: gym.Env, wrappers: Sequence[Mapping[str, Any] | str]) -> gym.Env:
    """Wrap `env` with each named Gymnasium wrapper, in order."""
    for name, args in wrapper_entries(wrappers):
        cls = _wrapper_class(name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                env = cls(env, **args)
        except gym.error.DependencyNotInstalled as exc:
            env.close()
            if name == "AtariPreprocessing":  # OpenCV, which the atari extra installs
                raise UserError(f"wrapper {name!r} needs OpenCV: {install_hint('atari')}") from None
            raise UserError(f"wrapper {name!r} needs a package that is not installed: {exc}") from None
        except Exception as exc:  # the wrapper rejected its arguments or the environment
            env.close()
            params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "env")]
            raise UserError(
                f"wrapper {name!r} with {args or 'no arguments'} failed: {type(exc).__name__}: {exc} "
                f"(its arguments: {', '.join(params) or 'none'})"
            ) from None
    return env


def make_env(
    env_id: str,
    render_mode: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    wrappers: Sequence[Mapping[str, Any] | str] = (),
) -> gym.Env:
    """Create `env_id` with `kwargs` and `wrappers`, checking that DQN can learn on it.

    `env_id` may be any registered id, a suite's id (`ALE/Pong-v5`, `MinAtar/Breakout-v1`:
    dqnrun registers the suite), or Gymnasium's `module:EnvId` form, which imports `module`
    (where the user's environment registers itself) first. `render_mode` is only passed when
    asked for, so an environment whose constructor has no such argument still trains.
    """
    kwargs = dict(kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    _load_suite(env_id)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise _dependency_error(env_id, exc) from None
    except gym.error.Error as exc:
        if isinstance(exc, (gym.error.NameNotFound, gym.error.NamespaceNotFound, gym.error.VersionNotFound)) or (
            env_id not in gym.registry
        ):
            raise _unknown_env(env_id) from None
        raise UserError(f"cannot create environment {env_id!r}: {exc}") from None
    except ModuleNotFoundError as exc:
        if ":" in env_id:
            raise _user_module_error(env_id, exc) from None
        raise _dependency_error(env_id, exc) from None
    except ImportError as exc:
        raise _dependency_error(env_id, exc) from None
    except TypeError as exc:
        text = str(exc).split(" was raised from the environment creator")[0]
        if render_mode is not None and "render_mode" in text:
            raise UserError(
                f"environment {env_id!r} cannot render (its constructor takes no render_mode); "
                "`dqnrun evaluate` measures it without rendering"
            ) from None
        if "unexpected keyword argument" in text or "required positional argument" in text:
            given = ", ".join(k for k in kwargs if k != "render_mode") or "none"
            raise UserError(f"environment {env_id!r} rejects its env_kwargs ({given}): {text}") from None
        raise UserError(f"cannot create environment {env_id!r}: TypeError: {text}") from None
    except Exception as exc:  # the environment's own constructor failed
        text = str(exc).split(" was raised from the environment creator")[0]
        raise UserError(f"cannot create environment {env_id!r}: {type(exc).__name__}: {text}") from None
    env = apply_wrappers(env, wrappers)
    try:
        check_spaces(env, env_id)
    except UserError:
        env.close()
        raise
    return env


def _unknown_env(env_id: str) -> UserError:
    name = env_id.split(":", 1)[-1]
    close = difflib.get_close_matches(name, list(gym.registry), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    namespace = name.split("/", 1)[0] if "/" in name else None
    if namespace in SUITES and not hint:
        hint = f" (is the {SUITES[namespace][2]} extra's version the one that has it?)"
    return UserError(f"unknown environment {env_id!r}{hint}")


def _dependency_error(env_id: str, exc: Exception) -> UserError:
    name = env_id.split(":", 1)[-1]
    if name.startswith(BOX2D_PREFIXES):
        return UserError(f"environment {env_id!r} needs Box2D: {install_hint('box2d')}")
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return UserError(f"environment {env_id!r} needs a package that is not installed: {first}")


def check_spaces(env: gym.Env, env_id: str) -> None:
    """Discrete actions and a Box of numbers (or booleans) as observations, of any shape."""
    if not isinstance(env.action_space, gym.spaces.Discrete):
        kind = type(env.action_space).__name__
        raise UserError(
            f"environment {env_id!r} has a {kind} action space; DQN needs a Discrete one "
            "(try CartPole-v1, Acrobot-v1, MountainCar-v0, or LunarLander-v3 with the box2d extra)"
        )
    obs = env.observation_space
    if not isinstance(obs, gym.spaces.Box) or not (np.issubdtype(obs.dtype, np.number) or obs.dtype == np.bool_):
        raise UserError(
            f"environment {env_id!r} has a {type(obs).__name__} observation space; "
            "dqnrun needs a Box of numbers (a FlattenObservation wrapper turns Dict or Tuple spaces into one)"
        )


def frame_stack_of(env: gym.Env) -> FrameStack | None:
    """The FrameStackObservation that produces `env`'s observations, if it is the outermost
    wrapper that changes them and pads with the reset frame or zeros (what the replay rebuilds)."""
    e = env
    while isinstance(e, gym.Wrapper):
        if isinstance(e, gym.wrappers.FrameStackObservation):
            if e.padding_type in ("reset", "zero") and e.stack_size > 1:
                return FrameStack(int(e.stack_size), str(e.padding_type))
            return None
        if e.observation_space is not e.env.observation_space:
            return None  # an outer wrapper changes the stacked observations
        e = e.env
    return None


def storage_dtype(dtype: np.dtype | str) -> np.dtype:
    """How observations of `dtype` are stored: booleans as uint8, floats as float32, integers as
    themselves (uint8 Atari frames stay one byte)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if np.issubdtype(dtype, np.floating):
        return np.dtype(np.float32)
    return dtype


def info_of(env: gym.Env) -> EnvInfo:
    spec = env.spec
    space = env.observation_space
    return EnvInfo(
        obs_shape=tuple(int(n) for n in space.shape),
        obs_dtype=np.dtype(space.dtype).name,
        n_actions=int(env.action_space.n),
        reward_threshold=spec.reward_threshold if spec else None,
        max_episode_steps=spec.max_episode_steps if spec else None,
        frame_stack=frame_stack_of(env),
    )


def env_info(env_id: str, kwargs: Mapping[str, Any] | None = None,
             wrappers: Sequence[Mapping[str, Any] | str] = ()) -> EnvInfo:
    """Shapes and thresholds of the environment (creates and closes one instance)."""
    env = make_env(env_id, kwargs=kwargs, wrappers=wrappers)
    try:
        return info_of(env)
    finally:
        env.close()


def config_env(config: Any, render_mode: str | None = None) -> gym.Env:
    """The environment of a run config (its `env`, `env_kwargs` and `wrappers`)."""
    return make_env(config.env, render_mode, config.env_kwargs, config.wrappers)
