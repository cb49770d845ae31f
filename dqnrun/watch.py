"""See and measure a saved policy: play it in a window, record it to a GIF or MP4, evaluate it."""

from __future__ import annotations

import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from dqnrun import seeding
from dqnrun.envs import make_env
from dqnrun.errors import UserError
from dqnrun.networks import NetworkSpec, QNetwork
from dqnrun.results import EVALUATION_FORMAT, MODEL_KINDS, RESULTS_FILE, ModelGaps, RunDir, load_model_file
from dqnrun.trainer import evaluate


@dataclass(eq=False)
class Policy:
    """A saved model, rebuilt: greedy actions and Q-values for observations.

    `policy(obs)` takes one observation (returns an int) or a batch (returns an array of ints);
    `policy.q_values(obs)` returns the Q-values, one row per observation of a batch.
    """

    seed: int
    env_id: str
    variant: str
    score: float  #: the evaluation score of the model when it was saved
    episode: int  #: the training episode it was saved after (1-based)
    network: QNetwork
    path: Path
    which: str = "best"  #: best (highest evaluation score during training) or final
    env_kwargs: dict = field(default_factory=dict)  #: gym.make's keyword arguments for env_id
    wrappers: tuple = ()  #: the Gymnasium wrappers of the run, in order

    def make_env(self, render_mode: str | None = None):
        """The environment the policy was trained on, with its kwargs and wrappers."""
        return make_env(self.env_id, render_mode, self.env_kwargs, self.wrappers)

    def _batch(self, obs: np.ndarray) -> tuple[torch.Tensor, bool]:
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == len(self.network.spec.obs_shape)  # one observation, not a batch
        return torch.as_tensor(x[None] if single else x), single

    @torch.no_grad()
    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q(s, a) for every action: shape (n_actions,) for one observation, (B, n_actions) for a batch."""
        x, single = self._batch(obs)
        q = self.network(x).numpy()
        return q[0] if single else q

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> int | np.ndarray:
        x, single = self._batch(obs)
        actions = self.network(x).argmax(dim=1).numpy()
        return int(actions[0]) if single else actions


def run_dir_of(path: str | Path) -> RunDir:
    path = Path(path)
    if path.is_file() and path.name == RESULTS_FILE:
        return RunDir(path.parent)
    if not path.exists():
        raise UserError(f"no such run: {path}")
    if not path.is_dir():
        raise UserError(f"{path} is not a run directory")
    from dqnrun.sweep import is_sweep_dir, load_manifest

    if is_sweep_dir(path):
        points = load_manifest(path).points
        example = f", e.g. {points[0].run_dir}" if points else ""
        raise UserError(f"{path} is a sweep; name one of its points{example} (`dqnrun list {path}` lists them)")
    return RunDir(path)


def unfinished_problem(run_dir: RunDir, seeds: Sequence[int]) -> str:
    """That a run's `seeds` have no model yet because it is still training, or was interrupted."""
    if run_dir.is_training():
        state = (f"is still training ({run_dir.training_owner()}; `dqnrun list {run_dir.path.parent}` shows "
                 "its progress)")
    else:
        state = f"is unfinished (`{run_dir.resume_command()}` continues it)"
    waiting = f"seed {seeds[0]} has" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))} have"
    return f"{run_dir.path} {state}: {waiting} not finished"


def model_files(run: str | Path, which: str = "best") -> dict[int, Path]:
    """{seed: model file} of a run directory; a run without models is a UserError."""
    run_dir = run_dir_of(run)
    files = run_dir.models(which)
    if not files:
        if which == "final" and run_dir.models("best"):
            raise UserError(f"{run_dir.path} has no final models (models/seed-<s>-final.pt; runs of dqnrun "
                            f"0.1.0 saved only the best); use --model best")
        gaps = run_dir.model_gaps(which)
        if gaps.unfinished and not run_dir.finished_seeds():
            raise UserError(f"{unfinished_problem(run_dir, gaps.unfinished)}, so it has no saved model yet")
        if gaps.missing:
            raise UserError(f"{run_dir.path} has lost its models: {missing_text(gaps)}; restore them from a copy "
                            "of the run")
        if which == "best" and run_dir.models("final"):
            raise UserError(f"{run_dir.path} has no best models (models/seed-<s>.pt: no evaluation ran while it "
                            f"trained); use --model final for the models at the end of training")
        raise UserError(f"{run_dir.path} has no saved models (models/seed-<s>.pt); is it a finished dqnrun run?")
    return files


def whole_run_notes(run: str | Path, which: str = "best") -> list[str]:
    """Check that every seed of a run can be measured before `dqnrun evaluate` measures them
    all (its file then stands for the run): a seed whose model is missing or not trained yet is
    a UserError naming it and the fix. Returns notes for seeds that never had such a model."""
    run_dir = run_dir_of(run)
    gaps = run_dir.model_gaps(which)
    present = sorted(run_dir.models(which))
    by_seed = f"--seed {present[0]}" if len(present) == 1 else f"--seed S, S one of {', '.join(map(str, present))}"
    if gaps.missing:
        raise UserError(f"{run_dir.path}: {missing_text(gaps)}, so the run cannot be measured as a whole; "
                        f"restore {'it' if len(gaps.missing) == 1 else 'them'} from a copy of the run, or "
                        f"measure the other seeds one at a time ({by_seed})")
    if gaps.unfinished:
        raise UserError(f"{unfinished_problem(run_dir, gaps.unfinished)}; measure the run when it "
                        f"finishes, or a finished seed now ({by_seed})")
    return [f"note: seed {seed} has no {which} model: {why}" for seed, why in gaps.never.items()]


def watch_notes(run: str | Path, policy: Policy) -> list[str]:
    """Notes for `dqnrun watch` when it picked the best seed among fewer than all: a seed's
    model is missing, or seeds have not finished training."""
    run_dir = run_dir_of(run)
    gaps = run_dir.model_gaps(policy.which)
    notes = []
    if gaps.missing:
        notes.append(f"note: {missing_text(gaps)}; showing seed {policy.seed}, the best of the others")
    if gaps.unfinished:
        notes.append(f"note: {unfinished_problem(run_dir, gaps.unfinished)}; showing seed {policy.seed}, "
                     "the best of the finished seeds")
    return notes


def missing_text(gaps: ModelGaps) -> str:
    """The missing model files of `gaps`, in words."""
    files = list(gaps.missing.values())
    return f"{', '.join(map(str, files))} {'is' if len(files) == 1 else 'are'} missing"


def policy_from_file(path: Path, which: str = "best") -> Policy:
    """Rebuild a policy from a model file, checking it against its environment."""
    blob = load_model_file(path)
    try:
        spec = NetworkSpec.from_dict(blob["network"])
        with torch.device("meta"):  # its size first, from a copy that allocates nothing
            params = sum(p.numel() for p in QNetwork(spec).parameters())
        if params > MAX_MODEL_PARAMETERS:
            raise UserError(f"{path}: damaged: its network would have {params:,} parameters")
        network = QNetwork(spec)
        network.load_state_dict(blob["state_dict"])
        seed, env_id = int(blob["seed"]), str(blob["env_id"])
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError, AttributeError):
        raise UserError(f"{path} does not hold a complete dqnrun network") from None
    check_env_module(env_id, path)
    network.eval()
    env_kwargs, wrappers = blob.get("env_kwargs") or {}, blob.get("wrappers") or []
    if not isinstance(env_kwargs, dict) or not isinstance(wrappers, list) or not all(isinstance(w, dict) for w in wrappers):
        raise UserError(f"{path} does not hold a complete dqnrun network") from None
    return Policy(seed, env_id, str(blob.get("variant", "?")),
                  float(blob.get("score", float("nan"))), int(blob.get("episode", 0)), network, Path(path), which,
                  env_kwargs, tuple(wrappers))


MAX_MODEL_PARAMETERS = 100_000_000  # as for training (experiment.MAX_PARAMETERS)
TRUST_MODULES = "DQNRUN_TRUST_MODULES"


def check_env_module(env_id: str, path: Path) -> None:
    """A model file names its environment; Gymnasium's `module:EnvId` form imports `module`,
    which runs its code. A file from elsewhere does not get to choose a module to import: one
    not imported yet must be named in DQNRUN_TRUST_MODULES (comma-separated)."""
    import sys

    if ":" not in env_id:
        return
    module = env_id.split(":", 1)[0]
    trusted = {m.strip() for m in os.environ.get(TRUST_MODULES, "").split(",") if m.strip()}
    if module not in sys.modules and module not in trusted:
        raise UserError(f"{path} names the environment {env_id[:80]!r}, which would import the Python module "
                        f"{module[:40]!r}; if you trust it, run with {TRUST_MODULES}={module[:40]}")


def check_env(policy: Policy, env) -> None:
    obs_dim, n_actions = math.prod(env.observation_space.shape), env.action_space.n
    spec = policy.network.spec
    if (spec.obs_dim, spec.n_actions) != (obs_dim, n_actions):
        raise UserError(
            f"{policy.path} was trained for {spec.obs_dim} observations and {spec.n_actions} actions, "
            f"but {policy.env_id} has {obs_dim} and {n_actions}"
        )


def policies(run: str | Path, seed: int | None = None, which: str = "best") -> list[Policy]:
    """Every saved policy of a run (of one kind: best or final), or the one of `seed`."""
    files = model_files(run, which)
    if seed is not None:
        if seed not in files:
            kind = "" if which == "best" else "final "
            raise UserError(f"{run} has no {kind}model for seed {seed} (seeds: {', '.join(map(str, files))})")
        files = {seed: files[seed]}
    return [policy_from_file(f, which) for f in files.values()]


def best_policy(run: str | Path, seed: int | None = None, which: str = "best") -> Policy:
    """The policy of `seed`, or of the seed with the best score (ties: the earlier episode)."""
    candidates = policies(run, seed, which)
    # A model saved without a score (nan: a seed that never evaluated) ranks last.
    return max(candidates, key=lambda p: (p.score if p.score == p.score else -math.inf, -p.episode, -p.seed))


def load_policy(run_or_model_path: str | Path, seed: int | None = None, which: str = "best") -> Policy:
    """A saved policy: from a model file (.pt), or from a run directory the model of `seed`
    (default: the seed whose model scored best), `which` = "best" or "final".

    A missing, foreign or damaged run or model raises `dqnrun.UserError`.
    """
    path = Path(run_or_model_path)
    if which not in MODEL_KINDS:
        raise UserError(f"which={which!r}: expected best or final")
    if path.is_file() and path.suffix == ".pt":
        return policy_from_file(path, which)
    return best_policy(path, seed, which)


MAX_EVALUATE = 100_000  # episodes per model
MAX_RECORD_BYTES = 2 << 30  # a recording's frames are kept in memory until written
EVAL_BATCH = 100  # environments open at once


def evaluate_policy(policy: Policy, episodes: int, env_seed: int = 0) -> np.ndarray:
    """Returns of `episodes` greedy episodes, run in batches of up to 100 environments.

    The episodes' reset seeds are drawn up front, so the returns do not depend on the batching
    (up to 100 episodes are one batch, as before); memory stays that of 100 environments.
    """
    if not 1 <= episodes <= MAX_EVALUATE:
        raise UserError(f"--episodes must be between 1 and {MAX_EVALUATE:,}, got {episodes:,}")
    seeds = seeding.env_seeds(np.random.default_rng(env_seed), episodes)
    envs = [policy.make_env() for _ in range(min(episodes, EVAL_BATCH))]
    try:
        check_env(policy, envs[0])
        return np.concatenate([evaluate(policy, envs[: len(chunk)], chunk)
                               for chunk in (seeds[i: i + EVAL_BATCH] for i in range(0, episodes, EVAL_BATCH))])
    finally:
        for env in envs:
            env.close()


EVALUATION_CI_METHOD = ("percentile bootstrap over seeds of the per-seed means, 10,000 resamples "
                        "(scipy.stats.bootstrap, generator seed 0)")


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def evaluation_record(run_dir: RunDir, which: str, episodes: int, env_seed: int,
                      measured: list[tuple[Policy, np.ndarray]]) -> dict:
    """What `dqnrun evaluate` measured, as saved in `RunDir.evaluation`: per seed the returns'
    mean, std (population, ddof 0), min and max over `episodes` greedy episodes from `env_seed`,
    and across seeds the mean of the per-seed means with a 95% percentile bootstrap CI over seeds."""
    from datetime import datetime, timezone

    from dqnrun import __version__
    from dqnrun.stats import bootstrap_ci

    means = np.array([returns.mean() for _, returns in measured])
    low, high = bootstrap_ci(means) if len(means) > 1 else (None, None)
    return {
        "format": EVALUATION_FORMAT,
        "run": run_dir.name,
        "model": which,
        "env_id": measured[0][0].env_id,
        "episodes": episodes,
        "env_seed": env_seed,
        "seeds": [{
            "seed": policy.seed, "mean": float(returns.mean()), "std": float(returns.std()),
            "min": float(returns.min()), "max": float(returns.max()), "episodes": len(returns), "env_seed": env_seed,
            "model_file": policy.path.relative_to(run_dir.path).as_posix() if policy.path.is_relative_to(run_dir.path)
            else policy.path.name,
            "score_at_training": _finite(policy.score), "episode_at_training": policy.episode,
        } for policy, returns in measured],
        "across_seeds": {
            "n_seeds": len(means), "mean": float(means.mean()), "ci_low": low, "ci_high": high, "confidence": 0.95,
            "method": EVALUATION_CI_METHOD if len(means) > 1 else "one seed: no interval",
        },
        "dqnrun_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def episodes_of(policy: Policy, env, episodes: int, env_seed: int) -> Iterator[tuple[int, float, int, np.ndarray | None]]:
    """Play greedy episodes; after every step yield (episode, running return, length, frame)."""
    seeds = seeding.env_seeds(np.random.default_rng(env_seed), episodes)
    for i, s in enumerate(seeds):
        obs, _ = env.reset(seed=s)
        total, length, done = 0.0, 0, False
        frame = env.render() if env.render_mode == "rgb_array" else None
        yield i + 1, total, length, frame
        while not done:
            action = policy(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
            frame = env.render() if env.render_mode == "rgb_array" else None
            yield i + 1, total, length, frame


def has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def play(policy: Policy, episodes: int, fps: int | None, env_seed: int,
         on_episode: Callable[[int, float, int], None]) -> bool:
    """Show `episodes` greedy episodes in a window; Ctrl-C closes it. True if all were played."""
    if not has_display():
        raise UserError("no display here (DISPLAY is not set); record a file instead: --record policy.gif")
    env = policy.make_env("human")
    try:
        check_env(policy, env)
        if fps:
            env.unwrapped.metadata["render_fps"] = fps
        last = (0, 0.0, 0)
        for episode, total, length, _ in episodes_of(policy, env, episodes, env_seed):
            if episode != last[0] and last[0]:
                on_episode(*last)
            last = (episode, total, length)
        on_episode(*last)
    except KeyboardInterrupt:
        return False
    finally:
        env.close()
    return True


MIN_FRAME_SIDE = 320  # pixels: smaller frames (MinAtar's 10x10 grid) are enlarged so the text fits


def as_rgb8(frame: np.ndarray) -> np.ndarray:
    """An environment's rgb_array frame as an (H, W, 3) uint8 image: grey or RGBA frames made
    RGB, float frames in [0, 1] (MinAtar's palette) scaled to 0-255 (other floats clipped to
    it), and frames under MIN_FRAME_SIDE pixels enlarged by a whole factor (nearest neighbour,
    so grid cells stay sharp)."""
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[2] in (1, 4):
        frame = frame[:, :, :1].repeat(3, axis=2) if frame.shape[2] == 1 else frame[:, :, :3]
    elif frame.ndim == 2:
        frame = frame[:, :, None].repeat(3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3 or min(frame.shape[:2]) < 1:
        raise UserError(f"the environment renders frames of shape {frame.shape}; recording needs images (H, W, 3)")
    if frame.dtype != np.uint8:
        values = np.nan_to_num(frame.astype(np.float64))
        if values.dtype.kind == "f" and frame.dtype.kind == "f" and values.min() >= 0 and values.max() <= 1:
            values = values * 255
        frame = np.clip(values, 0, 255).round().astype(np.uint8)
    k = -(-MIN_FRAME_SIDE // min(frame.shape[:2]))
    return frame.repeat(k, axis=0).repeat(k, axis=1) if k > 1 else frame


def annotate(frame: np.ndarray, text: str, scale: float):
    """The frame as a PIL image, resized by `scale`, with `text` in its top-left corner."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(as_rgb8(frame))
    if scale != 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=max(10, round(18 * scale)))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    draw.text((8, 6), text, fill=(0, 0, 0), font=font, stroke_width=2, stroke_fill=(255, 255, 255))
    return image


def check_record_path(path: Path) -> str:
    """The recording format of `path` (.gif or .mp4), after checking that it can be written."""
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise UserError(f"cannot record {path}: use a .gif or .mp4 file name")
    if suffix == ".mp4":
        try:
            import imageio.v2  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise UserError("writing .mp4 needs the video extra: pip install 'dqnrun[video]' (or record a .gif)") from None
    return suffix


def record(policy: Policy, path: Path, episodes: int, fps: int | None, env_seed: int, scale: float,
           on_episode: Callable[[int, float, int], None]) -> int:
    """Render episodes off-screen and write a .gif or .mp4 with the episode and return drawn on.

    Returns the number of frames written.
    """
    from dqnrun.results import write_with

    suffix = check_record_path(path)
    # Off-screen rendering needs no video device: SDL's dummy driver keeps it quiet headless.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    env = policy.make_env("rgb_array")
    # Gymnasium's checker warns about frames that as_rgb8 converts (MinAtar's floats) and
    # about a missing render_fps (then 30): nothing for the user to act on.
    warnings.filterwarnings("ignore", message=r".*(RGB-array rendering should return|No render fps was declared)")
    try:
        check_env(policy, env)
        fps = fps or int(env.metadata.get("render_fps") or 30)
        frames = []
        last = (0, 0.0, 0)
        for episode, total, length, frame in episodes_of(policy, env, episodes, env_seed):
            if episode != last[0] and last[0]:
                on_episode(*last)
            last = (episode, total, length)
            frames.append(annotate(frame, f"episode {episode}   return {total:.1f}", scale))
            if len(frames) * frames[0].width * frames[0].height * 3 > MAX_RECORD_BYTES:
                raise UserError(f"recording {path} would hold more than {MAX_RECORD_BYTES / 2**30:.0f} GiB of frames "
                                f"(at episode {episode}); lower --episodes or --scale")
        on_episode(*last)
    finally:
        env.close()

    def write_gif(tmp: Path) -> None:
        # GIF frame durations are whole hundredths of a second.
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=max(20, round(1000 / fps / 10) * 10), loop=0)

    def write_mp4(tmp: Path) -> None:
        import imageio.v2 as imageio

        with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=1) as writer:
            for image in frames:
                writer.append_data(np.asarray(image.convert("RGB")))

    write_with(path, write_gif if suffix == ".gif" else write_mp4)
    return len(frames)
