"""Sweeps through the CLI: points, names, manifest, results equal to `train`, Dask, faults."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml
from tests_helpers import TINY_RAW
from typer.testing import CliRunner

from dqnrun.cli import app
from dqnrun.sweep import load_manifest, load_sweep

runner = CliRunner()
KEYS = ("scores", "train_returns", "steps", "losses", "epsilons", "best_score", "best_episode")
GRID = {"variant": ["ddqn", "per"], "agent.learning_rate": [0.001, 0.0005]}
POINTS = {"ddqn-lr0.001": ("ddqn", 0.001), "ddqn-lr0.0005": ("ddqn", 0.0005),
          "per-lr0.001": ("per", 0.001), "per-lr0.0005": ("per", 0.0005)}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A 2x2 sweep file on a tiny base config, and `dqnrun train` of each of its points."""
    root = tmp_path_factory.mktemp("study")
    (root / "base.yaml").write_text(yaml.safe_dump({**TINY_RAW, "episodes": 6, "checkpoint_every": 2}))
    (root / "study.yaml").write_text(yaml.safe_dump({"name": "study", "base": "base.yaml", "grid": GRID,
                                                     "seeds": "3-4"}, sort_keys=False))
    trained = {}
    for point, (variant, lr) in POINTS.items():
        result = invoke("train", root / "base.yaml", "--set", f"variant={variant}", "--set",
                        f"agent.learning_rate={lr}", "--seeds", "3-4", "--out", root / "train", "--name", point,
                        "--jobs", "1")
        assert result.exit_code == 0, result.output
        trained[point] = joblib.load(root / "train" / point / "results.joblib")
    return root, trained


def assert_points_equal(sweep_dir: Path, trained: dict):
    manifest = load_manifest(sweep_dir)
    assert [p.name for p in manifest.points] == list(POINTS)
    for p in manifest.points:
        data = joblib.load(p.run_dir / "results.joblib")
        for key in KEYS:
            np.testing.assert_array_equal(data[key], trained[p.name][key])


def test_grid_points_have_readable_unique_names_and_full_configs(study):
    root, _ = study
    sweep = load_sweep(root / "study.yaml", overrides=["episodes=5"])
    assert sweep.swept == ("variant", "agent.learning_rate")
    assert [p.name for p in sweep.points] == list(POINTS)
    per = sweep.points[2].config
    assert per.variant == "per" and per.agent.prioritized and per.agent.learning_rate == 0.001
    assert per.seeds == (3, 4) and per.episodes == 5 and per.name == "per-lr0.001"


def test_points_may_name_other_configs(tmp_path):
    for variant in ("dqn", "dueling"):
        (tmp_path / f"{variant}.yaml").write_text(yaml.safe_dump({**TINY_RAW, "variant": variant}))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "points": [{"config": "dqn.yaml"}, {"config": "dueling.yaml"}, {"config": "dueling.yaml", "agent.tau": 0.1}],
    }))
    sweep = load_sweep(tmp_path / "s.yaml")
    assert sweep.name == "s" and [p.name for p in sweep.points] == ["dqn", "dueling", "dueling-tau0.1"]
    assert sweep.points[1].config.agent.tau == 0.01 and sweep.points[2].config.agent.tau == 0.1


def test_a_sweep_gives_each_point_the_numbers_of_train_and_compare_shows_swept_columns(study, tmp_path):
    root, trained = study
    result = invoke("sweep", root / "study.yaml", "--out", tmp_path, "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert_points_equal(tmp_path / "study", trained)
    manifest = yaml.safe_load((tmp_path / "study" / "sweep.yaml").read_text())
    assert manifest["swept"] == ["variant", "agent.learning_rate"]
    assert manifest["points"][3] == {"name": "per-lr0.0005", "seeds": [3, 4],
                                     "values": {"variant": "per", "agent.learning_rate": 0.0005}}
    compared = invoke("compare", tmp_path / "study", "--format", "csv")
    assert compared.exit_code == 0, compared.output
    lines = compared.output.splitlines()
    assert lines[0].endswith(",sweep.variant,agent.learning_rate") and len(lines) == 5
    assert lines[4].startswith("per-lr0.0005,") and lines[4].endswith(",per,0.0005")
    plotted = invoke("plot", tmp_path / "study", "-o", tmp_path / "study.png")
    assert plotted.exit_code == 0 and (tmp_path / "study.png").stat().st_size > 0

    again = invoke("sweep", root / "study.yaml", "--out", tmp_path, "--dry-run")
    assert again.exit_code == 0 and "4 points, 8 seed runs, 48 episodes, at most 24,000 env steps" in again.output
    assert not (tmp_path / "study-2").exists()  # a dry run writes nothing
    bounded = invoke("sweep", root / "study.yaml", "--out", tmp_path, "--dry-run", "--set", "max_steps=100")
    assert "100 env steps" in bounded.output and "6 episodes" not in bounded.output  # max_steps binds, not episodes
    assert "4 points, 8 seed runs, at most 800 env steps" in bounded.output
    named = invoke("sweep", root / "study.yaml", "--out", tmp_path, "--seeds", "3", "--set", "episodes=2",
                   "--set", "window=1", "--jobs", "1")
    assert named.exit_code == 0, named.output
    assert "already holds a run; writing to" in named.output and (tmp_path / "study-2").is_dir()
    done = invoke("sweep", "--resume", tmp_path / "study")
    assert done.exit_code == 2 and "already complete" in done.output

    # a point not finished (yet) is left out of compare and plot with a note, not an error
    (tmp_path / "study" / "per-lr0.0005" / "results.joblib").rename(tmp_path / "held.joblib")
    partial = invoke("compare", tmp_path / "study")
    assert partial.exit_code == 0, partial.output
    assert "per-lr0.001 " in partial.output and "per-lr0.0005 " not in partial.output
    assert f"not included: 1 of 4 points of {tmp_path / 'study'} are not finished (per-lr0.0005)" in partial.output
    for point in ("ddqn-lr0.001", "ddqn-lr0.0005", "per-lr0.001"):
        (tmp_path / "study" / point / "results.joblib").unlink()
    none = invoke("plot", tmp_path / "study", "-o", tmp_path / "none.png")
    assert none.exit_code == 2 and f"{tmp_path / 'study'} has no finished point yet" in none.output


def test_sigterm_then_resume_of_a_sweep_gives_the_numbers_of_train(study, tmp_path):
    root, trained = study
    proc = subprocess.Popen(
        [sys.executable, "-m", "dqnrun.cli", "sweep", str(root / "study.yaml"), "--out", str(tmp_path),
         "--jobs", "1", "--set", "checkpoint_every=1"],
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    deadline = time.time() + 60
    while proc.poll() is None and not list(tmp_path.glob("study/*/checkpoints/seed-*.pt")) and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert f"continue with `dqnrun sweep --resume {tmp_path / 'study'}`" in output and "Traceback" not in output
    # checkpoint_every changes where chunks end, never the numbers
    resumed = invoke("sweep", "--resume", tmp_path / "study", "--jobs", "2")
    assert resumed.exit_code == 0, resumed.output
    assert_points_equal(tmp_path / "study", trained)


def test_without_a_scheduler_dask_is_never_imported(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY_RAW, "seeds": [3], "episodes": 2, "window": 1}))
    code = (f"import sys; from dqnrun import train; train({str(config)!r}, out={str(tmp_path)!r}, jobs=1); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2 and one line


def bad_sweeps(tmp_path: Path) -> dict[str, dict]:
    base = {"base": "base.yaml"}
    return {
        "typo": {**base, "gird": {"variant": ["dqn"]}},
        "nogrid": {**base, "seeds": [1]},
        "badkey": {**base, "grid": {"agent.lr": [0.1]}},
        "notlist": {**base, "grid": {"agent.tau": 0.1}},
        "empty": {**base, "grid": {"agent.tau": []}},
        "twice": {**base, "grid": {"agent.learning_rate": [0.001, 0.002, 1.0e-3]}},
        "both": {**base, "set": {"agent.tau": 0.5}, "grid": {"agent.tau": [0.1, 0.2]}},
        "invalid": {**base, "grid": {"agent.tau": [0.5, 2.0]}},
        "nobase": {"points": [{"variant": "per"}]},
        "badseeds": {**base, "grid": {"agent.tau": [0.5]}, "seeds": "5-1"},
    }


@pytest.mark.parametrize("case, message", [
    ("typo", "unknown key 'gird' (did you mean 'grid'?)"),
    ("nogrid", "a sweep needs `grid:`"),
    ("badkey", "grid: 'agent.lr' is not a config key"),
    ("notlist", "grid: agent.tau must be a non-empty list of values"),
    ("empty", "grid: agent.tau has no values"),
    ("twice", "grid: agent.learning_rate lists 0.001 twice; remove one"),
    ("both", "agent.tau is both in set: and in grid:; keep it in one of them"),
    ("invalid", "point 'tau2.0':"),
    ("nobase", "point 1 has no `config:` and the sweep has no `base:`"),
    ("badseeds", "the range 5-1 is empty"),
])
def test_bad_sweep_files_exit_2_with_one_line(tmp_path, case, message):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(TINY_RAW))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(bad_sweeps(tmp_path)[case]))
    for extra in ([], ["--dry-run"]):
        result = invoke("sweep", tmp_path / "s.yaml", "--out", tmp_path / "out", *extra)
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "out" / "s").exists()


@pytest.mark.parametrize("args, message", [
    (["sweep", "--resume", "{tmp}"], "is not a sweep directory (no sweep.yaml)"),
    (["sweep", "--resume", "{tmp}/run"], "is a run, not a sweep; continue it with `dqnrun train --resume"),
    (["sweep"], "missing SWEEP"),
    (["sweep", "{tmp}/missing.yaml"], "sweep file not found"),
    (["sweep", "{tmp}/base.yaml", "--scheduler", "local:0"], "expected local:N with N >= 1"),
    (["sweep", "{tmp}/base.yaml", "--scheduler", "local:2", "--jobs", "2"], "--jobs is for local processes"),
    (["train", "{tmp}/base.yaml", "--scheduler", "foo"], "--scheduler 'foo': not an address"),
    (["train", "{tmp}/base.yaml", "--seeds", "1-x"], "expected integers and ranges"),
    (["train", "{tmp}/base.yaml", "--seeds", "1-3,2"], "seed 2 appears twice"),
])
def test_bad_sweep_options_exit_2_with_one_line(tmp_path, args, message):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(TINY_RAW))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(TINY_RAW))
    result = invoke(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_a_dead_scheduler_is_one_line_not_a_hang(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("dqnrun.workers.CONNECT_TIMEOUT", 1)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(TINY_RAW))
    start = time.monotonic()
    result = invoke("train", tmp_path / "base.yaml", "--out", tmp_path, "--scheduler", "tcp://127.0.0.1:9")
    assert result.exit_code == 2, result.output
    assert "cannot reach a Dask scheduler at tcp://127.0.0.1:9" in result.output
    assert len(result.output.strip().splitlines()) == 1 and time.monotonic() - start < 30
    assert not (tmp_path / "base").exists()  # nothing written


# ---------------------------------------------------------------------------------------------
# A real Dask cluster: a scheduler and two worker processes talking over TCP on this machine


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  scheduler_port=0, silence_logs=50) as cluster:
        yield cluster


def test_a_sweep_on_a_dask_cluster_gives_the_numbers_of_train_even_when_a_worker_is_killed(study, cluster, tmp_path):
    import distributed

    root, trained = study
    with distributed.Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
    killed = []

    def kill_when_training():
        deadline = time.time() + 60
        while not list(tmp_path.glob("study/*/checkpoints/seed-*.pt")) and time.time() < deadline:
            time.sleep(0.01)
        os.kill(pids[0], signal.SIGKILL)  # its chunk runs again on the other worker
        killed.append(pids[0])

    killer = threading.Thread(target=kill_when_training)
    killer.start()
    result = invoke("sweep", root / "study.yaml", "--out", tmp_path, "--scheduler", cluster.scheduler_address,
                    "--set", "checkpoint_every=1")
    killer.join()
    assert result.exit_code == 0, result.output
    assert f"Dask scheduler {cluster.scheduler_address}" in result.output
    assert killed
    assert_points_equal(tmp_path / "study", trained)


def test_a_vectorised_run_on_a_dask_cluster_gives_the_numbers_of_a_local_one(cluster, tmp_path):
    (tmp_path / "v.yaml").write_text(yaml.safe_dump({**TINY_RAW, "variant": "per", "seeds": [3, 4, 5],
                                                     "episodes": 4, "checkpoint_every": 2}))
    local = invoke("train", tmp_path / "v.yaml", "--out", tmp_path, "--name", "local", "--jobs", "1",
                   "--vectorize", "2")
    dask = invoke("train", tmp_path / "v.yaml", "--out", tmp_path, "--name", "dask", "--scheduler",
                  cluster.scheduler_address, "--vectorize", "2")
    assert local.exit_code == 0 and dask.exit_code == 0, local.output + dask.output
    a, b = joblib.load(tmp_path / "local" / "results.joblib"), joblib.load(tmp_path / "dask" / "results.joblib")
    for key in ("scores", "train_returns", "steps", "losses"):
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("sweep_file, folder, prefix", [("ablation-cartpole", "ablation", "abl-"),
                                                        ("ablation-lunarlander", "ablation-lunarlander", "abl-ll-")])
def test_the_shipped_ablation_sweeps_are_the_ablation_configs(sweep_file, folder, prefix):
    root = Path(__file__).parent.parent
    sweep = load_sweep(root / "sweeps" / f"{sweep_file}.yaml")
    configs = {p.stem.removeprefix(prefix): p for p in (root / "configs" / folder).glob("*.yaml")}
    assert sorted(p.name for p in sweep.points) == sorted(configs) and sweep.seeds == 14 * 5
    from dqnrun.config import load_config

    for point in sweep.points:
        assert point.config == load_config(configs[point.name], [f"name={point.name}"])


def test_a_grid_value_shared_by_points_is_written_out_in_the_manifest(tmp_path):
    from dqnrun.sweep import write_manifest

    (tmp_path / "base.yaml").write_text(yaml.safe_dump(TINY_RAW))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(
        {"name": "s", "base": "base.yaml", "grid": {"network.hidden": [[8, 8], [16]], "agent.learning_rate": [0.1, 0.2]}}))
    sweep = load_sweep(tmp_path / "s.yaml")
    (tmp_path / "s").mkdir()
    write_manifest(tmp_path / "s", sweep)
    assert "&" not in (tmp_path / "s" / "sweep.yaml").read_text()  # no YAML anchor, no alias
    assert [p.values["network.hidden"] for p in load_manifest(tmp_path / "s").points] == [[8, 8], [16], [8, 8], [16]]


@pytest.mark.parametrize("text, problem", [
    # Ten levels of ten aliases each: 10^10 values for anything that walks the swept values.
    ("format: dqnrun-sweep\nswept: [agent.learning_rate]\nl0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
     + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 10))
     + "points: [{name: a, values: {agent.learning_rate: *l9}}]\n", "expands to more than 1,000,000 values"),
    ("format: dqnrun-sweep\nswept: &s [*s]\npoints: []\n", "expands to more than 1,000,000 values"),
    ("format: dqnrun-sweep\npoints: []\n# " + "x" * (1 << 20) + "\n", "more than a sweep manifest can be"),
])
def test_a_hostile_manifest_is_one_line_and_nothing_walks_it(tmp_path, text, problem):
    from dqnrun.sweep import MANIFEST

    (tmp_path / "study").mkdir()
    (tmp_path / "study" / MANIFEST).write_text(text)
    from dqnrun.errors import UserError

    with pytest.raises(UserError, match=problem):
        load_manifest(tmp_path / "study")
    result = invoke("compare", tmp_path / "study")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_a_finished_point_opens_while_the_sweep_trains_the_others(study, tmp_path):
    from dqnrun import load_run
    from dqnrun.errors import UserError
    from dqnrun.sweep import execute_sweep, start_sweep
    from dqnrun.trainer import EpisodeEnd

    root, trained = study
    plan = start_sweep(root / "study.yaml", out=tmp_path, jobs=1)
    seen = {}  # point -> what load_run said of the point before it when its first episode ended

    def on_event(point, event):
        names = list(POINTS)
        if isinstance(event, EpisodeEnd) and event.episode == 1 and point not in seen and names.index(point) > 0:
            before = tmp_path / "study" / names[names.index(point) - 1]
            try:
                seen[point] = load_run(before).scores.shape
            except UserError as e:
                seen[point] = str(e)

    execute_sweep(plan, on_event)
    # One job, depth first: every earlier point is complete, saved and openable (2 seeds x 6 episodes).
    assert seen == {name: (2, 6) for name in list(POINTS)[1:]}
    assert_points_equal(tmp_path / "study", trained)  # and nothing else changed
    assert not list((tmp_path / "study").rglob(".training"))  # nor the sweep's own marker


def test_a_point_still_training_says_so_when_opened(tmp_path):
    import os
    import socket

    from dqnrun import load_run
    from dqnrun.errors import UserError

    run = tmp_path / "point"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(TINY_RAW))
    (run / ".training").write_text(f"{os.getpid()} {socket.gethostname()}\n")
    with pytest.raises(UserError, match=rf"point is still training \(process {os.getpid()} on .*\); open it when it "
                                        rf"finishes \(`dqnrun list {tmp_path}` shows its progress\)"):
        load_run(run)
    (run / ".training").write_text("999999999 " + socket.gethostname() + "\n")  # a dead process's marker
    with pytest.raises(UserError, match="is an unfinished run"):
        load_run(run)


def test_sweep_prints_paths_and_names_literally(tmp_path):
    """Rich markup in a path (or in the name a manifest from elsewhere gives its sweep) is text."""
    folder = tmp_path / "a[/x]"  # the folder "x]" in the folder "a["
    folder.mkdir(parents=True)
    (folder / "base.yaml").write_text(yaml.safe_dump({**TINY_RAW, "episodes": 2, "seeds": [1]}))
    (folder / "s.yaml").write_text(yaml.safe_dump({"name": "s", "base": "base.yaml",
                                                   "grid": {"agent.learning_rate": [0.001]}}))
    dry = invoke("sweep", folder / "s.yaml", "--dry-run")
    assert dry.exit_code == 0 and f"from{folder / 's.yaml'}" in "".join(dry.output.split()), dry.output
    out = tmp_path / "o[/red]"
    result = invoke("sweep", folder / "s.yaml", "--out", out, "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert f"saved{out / 's'}(1points)" in "".join(result.output.split())
    manifest = (out / "s" / "sweep.yaml").read_text().replace("name: s\n", "name: '[/bold]'\n")
    (out / "s" / "sweep.yaml").write_text(manifest)
    again = invoke("sweep", "--resume", out / "s")
    assert again.exit_code == 2 and "Traceback" not in again.output, again.output  # "already complete"
