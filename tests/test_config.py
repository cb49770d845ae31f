import re
from pathlib import Path

import pytest

from dqnrun.config import (
    parse_seeds,
    PRESETS,
    Config,
    apply_overrides,
    config_from_dict,
    describe_keys,
    load_config,
)
from dqnrun.errors import UserError

CONFIGS = Path(__file__).parent.parent / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_round_trips(path, tmp_path):
    config = load_config(path)
    again = tmp_path / "again.yaml"
    again.write_text(config.to_yaml())
    assert load_config(again) == config


def test_shipped_configs_reproduce_the_lecture_defaults():
    dqn, ddqn = load_config(CONFIGS / "dqn.yaml"), load_config(CONFIGS / "ddqn.yaml")
    for c in (dqn, ddqn):
        assert c.env == "CartPole-v1" and c.seeds == (12, 34, 56, 78, 90) and c.episodes == 250
        a = c.agent
        assert (a.memory_size, a.memory_start_size, a.batch_size, a.gamma) == (50_000, 320, 64, 1.0)
        assert (a.target_update_steps, a.tau, a.optimizer) == (15, 1.0, "rmsprop")
        assert (c.epsilon.max, c.epsilon.min, c.epsilon.decay_steps) == (1.0, 0.3, 20_000)
        assert c.network.hidden == (512, 128) and c.eval_episodes == 5 and c.window == 25
    assert dqn.agent.learning_rate == 0.0007 and not dqn.agent.double
    assert ddqn.agent.learning_rate == 0.001 and ddqn.agent.double


@pytest.mark.parametrize("variant", sorted(PRESETS))
def test_presets_set_the_switch_defaults(variant):
    config = config_from_dict({"variant": variant})
    for key, value in PRESETS[variant].items():
        assert getattr(config.agent, key) == value


def test_a_switch_overrides_its_preset():
    config = config_from_dict({"variant": "dueling", "agent": {"prioritized": True, "tau": 1.0}})
    assert config.agent.dueling and config.agent.prioritized and config.agent.tau == 1.0


def test_overrides_parse_yaml_values_and_create_sections():
    raw = apply_overrides({"variant": "dqn"}, ["agent.learning_rate=5e-4", "seeds=[1, 2]", "per.beta_steps=null"])
    assert raw == {"variant": "dqn", "agent": {"learning_rate": 5e-4}, "seeds": [1, 2], "per": {"beta_steps": None}}
    config = config_from_dict(raw)
    assert config.agent.learning_rate == 5e-4 and config.seeds == (1, 2)


def test_config_is_frozen():
    config = config_from_dict({"variant": "dqn"})
    with pytest.raises(AttributeError):
        config.episodes = 3  # type: ignore[misc]


def test_integers_are_accepted_for_floats_but_not_the_reverse():
    assert config_from_dict({"variant": "dqn", "agent": {"gamma": 1}}).agent.gamma == 1.0
    with pytest.raises(UserError, match=r"agent.batch_size must be an integer, got 64.5"):
        config_from_dict({"variant": "dqn", "agent": {"batch_size": 64.5}})


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"variant": "dqn", "agent": {"learnig_rate": 0.1}}, r"unknown key 'agent.learnig_rate' \(did you mean 'agent.learning_rate'\?\)"),
        ({"variant": "dqn", "episode": 3}, r"unknown key 'episode' \(did you mean 'episodes'\?\)"),
        ({"variant": "ddqm"}, r"unknown variant 'ddqm' \(did you mean 'ddqn'\?\)"),
        ({"env": "CartPole-v1"}, r"missing key 'variant'"),
        ({"variant": "dqn", "agent": {"gamma": 1.5}}, r"agent.gamma must be in \[0, 1\], got 1.5"),
        ({"variant": "dqn", "agent": {"batch_size": 100, "memory_size": 50}}, r"batch_size \(100\) is larger than agent.memory_size \(50\)"),
        ({"variant": "dqn", "agent": {"memory_size": -5}}, r"agent.memory_size must be >= 1, got -5"),
        ({"variant": "dqn", "agent": {"double": "yes"}}, r"agent.double must be true or false, got 'yes'"),
        ({"variant": "dqn", "seeds": [1, "a"]}, r"seeds\[1\] must be an integer"),
        ({"variant": "dqn", "agent": 3}, r"agent must be a section"),
        ({"variant": "dqn", "agent": {"optimizer": "adamw"}}, r"optimizer 'adamw' is unknown \(did you mean 'adam'\?\)"),
        ({"variant": "dqn", "agent": {"tau": 0}}, r"agent.tau must be in \(0, 1\]"),
        ({"variant": "dqn", "epsilon": {"min": 0.5, "max": 0.2}}, r"0 <= min <= max <= 1"),
        # C51's dense projection: 64 x 5,000^2 numbers would be 6 GiB per update.
        ({"variant": "rainbow", "agent": {"atoms": 5000}},
         r"agent.atoms 5,000 with agent.batch_size 64: C51's projection holds batch x atoms\^2 = 1,600,000,000"),
    ],
)
def test_bad_values_are_one_line_errors(raw, message):
    with pytest.raises(UserError, match=message) as info:
        config_from_dict(raw)
    assert "\n" not in str(info.value)


def test_atoms_are_bounded_only_where_c51_uses_them():
    assert config_from_dict({"variant": "ddqn", "agent": {"atoms": 5000}}).agent.atoms == 5000  # unused
    assert config_from_dict({"variant": "rainbow", "agent": {"atoms": 2048}}).agent.atoms == 2048  # 64 x 2048^2 = 2^28


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the file is empty"),
        ("- 1\n- 2\n", "a config is a YAML mapping of keys, not a list"),
        ("variant: [dqn\n", "invalid YAML at line"),
    ],
)
def test_malformed_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_config(path)


def test_name_defaults_to_the_file_stem(tmp_path):
    path = tmp_path / "my-run.yaml"
    path.write_text("variant: per\n")
    assert load_config(path).name == "my-run"


def test_every_key_is_documented():
    rows = describe_keys()
    assert len(rows) > 25
    assert all(doc for _, _, doc in rows)
    assert ("agent.tau", "from the preset", "target update factor: 1.0 = hard copy, < 1 = Polyak averaging") in rows
    assert ("agent.gamma", "1.0", "discount factor, in [0, 1]") in rows


def test_default_config_matches_the_design_card():
    config = Config(name="x", variant="ddqn")
    assert config.seeds == (12, 34, 56, 78, 90) and config.agent.memory_size == 50_000


def test_a_window_longer_than_the_run_shrinks_to_fit():
    c = config_from_dict({"variant": "dqn", "episodes": 10, "window": 25})
    assert c.window == 25 and c.smoothing_window == 10
    assert config_from_dict({"variant": "dqn", "episodes": 30}).smoothing_window == 25


ABLATION = CONFIGS / "ablation"
COMPONENTS = {"double": ("double", True), "per": ("prioritized", True), "dueling": ("dueling", True),
              "nstep": ("n_step", 3), "c51": ("distributional", True), "noisy": ("noisy", True)}


def switches(config):
    return {name: getattr(config.agent, key) == on for name, (key, on) in COMPONENTS.items()}


@pytest.mark.parametrize("folder, prefix", [("ablation", "abl-"), ("ablation-lunarlander", "abl-ll-")])
def test_ablation_configs_add_or_remove_exactly_one_component(folder, prefix):
    configs = {p.stem.removeprefix(prefix): load_config(p) for p in (CONFIGS / folder).glob("*.yaml")}
    assert len(configs) == 2 + 2 * len(COMPONENTS)
    rainbow = configs["rainbow"]
    if folder == "ablation":
        shipped = load_config(CONFIGS / "rainbow.yaml")
        assert rainbow.agent == shipped.agent and rainbow.epsilon == shipped.epsilon
    assert not any(switches(configs["dqn"]).values()) and all(switches(rainbow).values())
    for name in COMPONENTS:
        assert switches(configs[f"dqn+{name}"]) == {n: n == name for n in COMPONENTS}
        assert switches(configs[f"rainbow-no-{name}"]) == {n: n != name for n in COMPONENTS}
    # Everything but the six switches (and exploration, which NoisyNet replaces, and the loss,
    # which C51 replaces by its cross-entropy) is shared.
    keys = {key for key, _ in COMPONENTS.values()} | {"loss"}
    shared = [{k: v for k, v in c.to_dict()["agent"].items() if k not in keys} for c in configs.values()]
    assert all(s == shared[0] for s in shared)
    plain = {c.agent.loss for c in configs.values() if not c.agent.distributional}
    assert len(plain) == 1
    dqn_exploration = configs["dqn"].epsilon
    for c in configs.values():
        assert c.epsilon == (rainbow.epsilon if c.agent.noisy else dqn_exploration) and rainbow.epsilon.max == 0.0
        assert {k: v for k, v in c.to_dict().items() if k not in ("name", "variant", "agent", "epsilon")} == {
            k: v for k, v in rainbow.to_dict().items() if k not in ("name", "variant", "agent", "epsilon")}


@pytest.mark.parametrize("name", ["2024", "null", "true", "[1, 2]", "a: b", "1e3"])
def test_name_is_a_plain_string_never_yaml(tmp_path, name):
    path = tmp_path / "c.yaml"
    path.write_text("variant: dqn\n")
    assert load_config(path, name=name).name == name


@pytest.mark.parametrize("text, message", [
    ("variant: dqn\nagent: {learning_rate: .inf}\n", "agent.learning_rate must be a finite number, got inf"),
    ("variant: dqn\nepsilon: {min: .nan}\n", "epsilon.min must be a finite number, got nan"),
    ("variant: dqn\nvariant: ddqn\n", "duplicate key 'variant' (first at line 1)"),
    ("base: &b {gamma: 0.9}\nvariant: dqn\nagent: *b\n", "YAML aliases (*b) are not supported"),
])
def test_yaml_that_a_config_refuses(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(message)):
        load_config(path)


def test_warns_when_eval_every_steps_exceeds_max_steps():
    from dqnrun.config import config_from_dict, config_warnings

    config = config_from_dict({"variant": "dqn", "eval_every_steps": 25_000, "max_steps": 300})
    assert config_warnings(config) == [
        "eval_every_steps 25,000 > max_steps 300: no evaluation will run; the best model is never saved"]
    assert config_warnings(config_from_dict({"variant": "dqn", "eval_every_steps": 300, "max_steps": 300})) == []


@pytest.mark.parametrize("text, seeds", [
    ("1,2,3", [1, 2, 3]),
    ("1-3,7", [1, 2, 3, 7]),
    ("3 4", [3, 4]),                 # spaces separate seeds as commas do: never "34"
    ("1, 2 ,3", [1, 2, 3]),
    ("1 - 3, 10", [1, 2, 3, 10]),    # spaces around a range's dash
    (" 12 ", [12]),
])
def test_seed_lists(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [
    ("1 2 1", "seed 1 appears twice"),
    ("1 x", "expected integers and ranges"),
    ("3-1", "the range 3-1 is empty"),
    ("", "needs at least one seed"),
])
def test_bad_seed_lists(text, message):
    with pytest.raises(UserError, match=message):
        parse_seeds(text)


def test_a_list_key_of_the_wrong_type_names_the_items_in_the_plural(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("variant: dqn\nseeds: {a: 1}\n")
    with pytest.raises(UserError, match="seeds must be a list of integers"):
        load_config(path)


@pytest.mark.parametrize("overrides, name, message", [
    (["agent.lerning_rate=0.1"], None, "with agent.lerning_rate=0.1: unknown key 'agent.lerning_rate'"),
    (["window=3", "agent.learning_rate=abc"], None,
     "with agent.learning_rate=abc: agent.learning_rate must be a number, got 'abc'"),
    ("episodes=0", None, "with episodes=0: episodes must be >= 1, got 0"),   # one override as a string
    ([], "a/b", "with name 'a/b': name 'a/b' must be a plain directory name"),
    # The first change fails otherwise than the two together: the changes are blamed together.
    (["agent.memory_size=10", "agent.batch_size=20"], None,
     "with its overrides: agent.batch_size (20) is larger than agent.memory_size (10)"),
])
def test_an_override_that_breaks_a_valid_file_is_named_not_the_file(tmp_path, overrides, name, message):
    path = tmp_path / "c.yaml"
    path.write_text("variant: ddqn\nagent: {memory_start_size: 5}\n")
    with pytest.raises(UserError) as info:
        load_config(path, overrides, name=name)
    assert str(info.value).startswith(f"{path} {message}")


def test_a_broken_file_is_blamed_even_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("variant: ddqn\nepisodes: 0\n")
    with pytest.raises(UserError, match=r"c\.yaml: episodes must be >= 1, got 0$"):
        load_config(path, ["window=3"])


@pytest.mark.parametrize("typed, meant", [
    ("agent.lr", "agent.learning_rate"),        # initials of the words
    ("agent.bs", "agent.batch_size"),
    ("agent.leraning_rate", "agent.learning_rate"),  # a misspelling
    ("agent.gama", "agent.gamma"),
])
def test_an_unknown_key_suggests_the_key_meant(tmp_path, typed, meant):
    path = tmp_path / "c.yaml"
    path.write_text("variant: ddqn\n")
    with pytest.raises(UserError, match=re.escape(f"unknown key {typed!r} (did you mean {meant!r}?)")):
        load_config(path, [f"{typed}=1"])
