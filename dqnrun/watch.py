"""See and measure a saved policy: play it in a window, record it to a GIF or MP4, evaluate it."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from dqnrun import seeding
from dqnrun.envs import make_env
from dqnrun.errors import UserError
from dqnrun.networks import NetworkSpec, QNetwork
from dqnrun.results import RESULTS_FILE, load_model_file
from dqnrun.trainer import evaluate


@dataclass
class Policy:
    """A saved model, rebuilt: greedy actions for batches of observations."""

    seed: int
    env_id: str
    variant: str
    score: float
    episode: int
    network: QNetwork
    path: Path

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        return self.network(x).argmax(dim=1).numpy()


def run_dir_of(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name == RESULTS_FILE:
        return path.parent
    if not path.exists():
        raise UserError(f"no such run: {path}")
    if not path.is_dir():
        raise UserError(f"{path} is not a run directory")
    return path


def model_files(run: str | Path) -> dict[int, Path]:
    """{seed: model file} of a run directory; a run without models is a UserError."""
    run_dir = run_dir_of(run)
    files = {}
    for f in sorted((run_dir / "models").glob("seed-*.pt")):
        try:
            files[int(f.stem.removeprefix("seed-"))] = f
        except ValueError:
            continue
    if not files:
        raise UserError(f"{run_dir} has no saved models (models/seed-<s>.pt); is it a finished dqnrun run?")
    return files


def load_policy(path: Path) -> Policy:
    """Rebuild a policy from a model file, checking it against its environment."""
    blob = load_model_file(path)
    try:
        spec = NetworkSpec.from_dict(blob["network"])
        network = QNetwork(spec)
        network.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError):
        raise UserError(f"{path} does not hold a complete dqnrun network") from None
    network.eval()
    return Policy(int(blob["seed"]), str(blob["env_id"]), str(blob.get("variant", "?")),
                  float(blob.get("score", float("nan"))), int(blob.get("episode", 0)), network, path)


def check_env(policy: Policy, env) -> None:
    obs_dim, n_actions = env.observation_space.shape[0], env.action_space.n
    spec = policy.network.spec
    if (spec.obs_dim, spec.n_actions) != (obs_dim, n_actions):
        raise UserError(
            f"{policy.path} was trained for {spec.obs_dim} observations and {spec.n_actions} actions, "
            f"but {policy.env_id} has {obs_dim} and {n_actions}"
        )


def policies(run: str | Path, seed: int | None = None) -> list[Policy]:
    """Every saved policy of a run, or the one of `seed`."""
    files = model_files(run)
    if seed is not None:
        if seed not in files:
            raise UserError(f"{run} has no model for seed {seed} (seeds: {', '.join(map(str, files))})")
        files = {seed: files[seed]}
    return [load_policy(f) for f in files.values()]


def best_policy(run: str | Path, seed: int | None = None) -> Policy:
    """The policy of `seed`, or of the seed with the best score (ties: the earlier episode)."""
    candidates = policies(run, seed)
    return max(candidates, key=lambda p: (p.score, -p.episode, -p.seed))


def evaluate_policy(policy: Policy, episodes: int, env_seed: int = 0) -> np.ndarray:
    """Returns of `episodes` greedy episodes, run together as one batch of environments."""
    envs = [make_env(policy.env_id) for _ in range(episodes)]
    try:
        check_env(policy, envs[0])
        seeds = seeding.env_seeds(np.random.default_rng(env_seed), episodes)
        return evaluate(policy, envs, seeds)
    finally:
        for env in envs:
            env.close()


def episodes_of(policy: Policy, env, episodes: int, env_seed: int) -> Iterator[tuple[int, float, int, np.ndarray | None]]:
    """Play greedy episodes; after every step yield (episode, running return, length, frame)."""
    seeds = seeding.env_seeds(np.random.default_rng(env_seed), episodes)
    for i, s in enumerate(seeds):
        obs, _ = env.reset(seed=s)
        total, length, done = 0.0, 0, False
        frame = env.render() if env.render_mode == "rgb_array" else None
        yield i + 1, total, length, frame
        while not done:
            action = int(policy(obs[None])[0])
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
    env = make_env(policy.env_id, render_mode="human")
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


def annotate(frame: np.ndarray, text: str, scale: float):
    """The frame as a PIL image, resized by `scale`, with `text` in its top-left corner."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(frame)
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
    env = make_env(policy.env_id, render_mode="rgb_array")
    try:
        check_env(policy, env)
        fps = fps or int(env.metadata.get("render_fps", 30))
        frames = []
        last = (0, 0.0, 0)
        for episode, total, length, frame in episodes_of(policy, env, episodes, env_seed):
            if episode != last[0] and last[0]:
                on_episode(*last)
            last = (episode, total, length)
            frames.append(annotate(frame, f"episode {episode}   return {total:g}", scale))
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
