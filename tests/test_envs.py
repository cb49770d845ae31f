"""Environments from a config: kwargs and wrappers reach the environment, module:EnvId, suites."""

import gymnasium as gym
import numpy as np
import pytest
from custom_envs import Recording
from tests_helpers import TINY_RAW

from dqnrun.config import config_from_dict
from dqnrun.envs import FrameStack, config_env, env_info, frame_stack_of, make_env, storage_dtype
from dqnrun.errors import UserError

RECORDING = "custom_envs:dqnrun-test/Recording-v0"


def config(**changes):
    return config_from_dict({**TINY_RAW, **changes})


def test_env_kwargs_reach_the_constructor_and_render_mode_only_when_asked():
    Recording.calls.clear()
    c = config(env=RECORDING, env_kwargs={"bonus": 0.5, "size": 3})
    env = config_env(c)
    assert Recording.calls == [{"render_mode": None, "bonus": 0.5, "size": 3}]
    assert env.observation_space.shape == (3,)
    config_env(c, render_mode="rgb_array")
    assert Recording.calls[-1] == {"render_mode": "rgb_array", "bonus": 0.5, "size": 3}


def test_wrappers_apply_in_order_with_their_arguments():
    c = config(env=RECORDING, wrappers=[
        {"name": "ClipReward", "min_reward": 0.0, "max_reward": 0.25},
        "TimeAwareObservation",
        {"name": "FrameStackObservation", "stack_size": 3},
    ])
    assert c.wrappers[1] == {"name": "TimeAwareObservation"}
    env = config_env(c)
    assert isinstance(env, gym.wrappers.FrameStackObservation) and env.stack_size == 3
    assert isinstance(env.env, gym.wrappers.TimeAwareObservation)
    assert isinstance(env.env.env, gym.wrappers.ClipReward)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 3)  # 2 values + the time, stacked 3 times
    _, reward, *_ = env.step(1)
    assert reward == 0.25  # the env pays 1.0, clipped
    assert config(**{**c.to_dict(), "name": "x"}).wrappers == c.wrappers  # round trip


def test_wrapper_arguments_from_yaml_lists_become_tuples():
    env = make_env("custom_envs:dqnrun-test/Grid-v0",
                   wrappers=[{"name": "ReshapeObservation", "shape": [36, 2]}])
    assert env.observation_space.shape == (36, 2)


def test_frame_stack_is_found_only_when_it_makes_the_observation():
    grid = "custom_envs:dqnrun-test/Grid-v0"
    stack = {"name": "FrameStackObservation", "stack_size": 4}
    assert frame_stack_of(make_env(grid, wrappers=[stack])) == FrameStack(4, "reset")
    assert frame_stack_of(make_env(grid, wrappers=[{**stack, "padding_type": "zero"}])) == FrameStack(4, "zero")
    assert frame_stack_of(make_env(grid, wrappers=[stack, {"name": "ClipReward", "max_reward": 1}])) == FrameStack(4, "reset")
    assert frame_stack_of(make_env(grid, wrappers=[stack, "FlattenObservation"])) is None
    assert frame_stack_of(make_env(grid)) is None
    info = env_info(grid, {"dtype": "bool", "channels": 3}, [stack])
    assert info.obs_shape == (4, 6, 6, 3) and info.obs_dtype == "bool" and info.frame_stack == FrameStack(4, "reset")


def test_a_class_without_render_mode_trains_but_cannot_render():
    env = make_env("custom_envs:dqnrun-test/NoRender-v0", kwargs={"length": 3})
    assert env.reset(seed=1)[0].shape == (1,)
    with pytest.raises(UserError, match="cannot render"):
        make_env("custom_envs:dqnrun-test/NoRender-v0", render_mode="rgb_array")


def test_storage_dtypes():
    assert storage_dtype("bool") == np.uint8 and storage_dtype("uint8") == np.uint8
    assert storage_dtype("float64") == np.float32 and storage_dtype("int16") == np.int16


def test_box2d_missing_names_the_extra(monkeypatch):
    def no_box2d(*args, **kwargs):
        raise gym.error.DependencyNotInstalled('Box2D is not installed, run `pip install "gymnasium[box2d]"`')

    monkeypatch.setattr(gym, "make", no_box2d)
    with pytest.raises(UserError, match=r'needs Box2D: pip install "dqnrun\[box2d\]"'):
        make_env("LunarLander-v3")


def test_minatar_ids_register_through_the_extra():
    pytest.importorskip("minatar")
    env = make_env("MinAtar/Breakout-v1")
    assert env.observation_space.shape == (10, 10, 4) and env.observation_space.dtype == np.bool_


def train_cli(tmp_path, **changes):
    import yaml
    from typer.testing import CliRunner

    from dqnrun.cli import app

    raw = {**TINY_RAW, "seeds": [1], "name": "custom", **changes}
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "results"), "--jobs", "1"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return tmp_path / "results" / "custom"


def test_a_users_module_env_trains_through_the_cli_and_evaluates(tmp_path):
    from typer.testing import CliRunner

    from dqnrun.cli import app
    from dqnrun.watch import best_policy

    run = train_cli(tmp_path, env="custom_envs:dqnrun-test/NoRender-v0", env_kwargs={"length": 4},
                    agent={"memory_size": 200, "memory_start_size": 10, "batch_size": 8})
    policy = best_policy(run)
    assert policy.env_kwargs == {"length": 4}
    result = CliRunner().invoke(app, ["evaluate", str(run), "-n", "2"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["watch", str(run), "--record", str(tmp_path / "x.gif")], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "cannot render (its constructor takes no render_mode)" in result.output


def test_stacked_uint8_frames_train_with_the_cnn_and_the_frame_store(tmp_path):
    run = train_cli(tmp_path, env="custom_envs:dqnrun-test/Grid-v0", env_kwargs={"channels": 1},
                    wrappers=[{"name": "FrameStackObservation", "stack_size": 3}], network={"type": "auto"},
                    agent={"memory_size": 100, "memory_start_size": 10, "batch_size": 8, "dueling": True})
    from dqnrun.watch import best_policy

    spec = best_policy(run).network.spec
    assert spec.obs_shape == (3, 6, 6, 1) and spec.trunk == "minatar" and spec.obs_dtype == "uint8"


def test_a_tiny_minatar_run(tmp_path):
    pytest.importorskip("minatar")
    run = train_cli(tmp_path, env="MinAtar/Breakout-v1", episodes=3, eval_episodes=1, window=1,
                    agent={"memory_size": 300, "memory_start_size": 20, "batch_size": 8})
    from dqnrun.watch import best_policy

    assert best_policy(run).network.spec.trunk == "minatar"


def test_a_tiny_atari_run(tmp_path):
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    run = train_cli(tmp_path, env="ALE/Pong-v5", episodes=1, eval_episodes=1, window=1,
                    env_kwargs={"frameskip": 1, "max_episode_steps": 160},
                    wrappers=[{"name": "AtariPreprocessing", "noop_max": 0},
                              {"name": "FrameStackObservation", "stack_size": 4}],
                    agent={"memory_size": 100, "memory_start_size": 16, "batch_size": 4})
    from dqnrun.watch import best_policy

    spec = best_policy(run).network.spec
    assert spec.obs_shape == (4, 84, 84) and spec.trunk == "nature"


def test_atari_preprocessing_without_opencv_names_the_extra(monkeypatch):
    def no_cv2(*args, **kwargs):
        raise gym.error.DependencyNotInstalled("opencv-python package not installed")

    monkeypatch.setattr(gym.wrappers, "AtariPreprocessing", no_cv2)
    with pytest.raises(UserError, match=r'needs OpenCV: pip install "dqnrun\[atari\]"'):
        make_env("CartPole-v1", wrappers=["AtariPreprocessing"])
