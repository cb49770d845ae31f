import json
import os
import stat

import pytest

from dqnrun.errors import UserError
from dqnrun.results import claim_run_dir, write_text, write_with


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "sub" / "file.txt"
    write_text(path, "first")
    write_text(path, "second")
    assert path.read_text() == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.txt"]
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & 0o044  # readable by others like any file (mkstemp alone gives 0600)


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "file.txt"
    write_text(path, "old")

    def crash(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_with(path, crash)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_claim_run_dir_never_reuses_a_directory(tmp_path):
    first, note = claim_run_dir(tmp_path, "ddqn")
    assert first == tmp_path / "ddqn" and note is None
    (first / "keep").write_text("x")
    second, note = claim_run_dir(tmp_path, "ddqn")
    assert second == tmp_path / "ddqn-2" and "already holds a run" in note
    third, _ = claim_run_dir(tmp_path, "ddqn")
    assert third == tmp_path / "ddqn-3"
    assert (first / "keep").read_text() == "x"
    forced, note = claim_run_dir(tmp_path, "ddqn", force=True)
    assert forced == first and not (first / "keep").exists() and "--force" in note


def test_a_results_directory_that_is_not_writable(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(UserError, match="is not writable; choose another with --out"):
        claim_run_dir(tmp_path, "ddqn")


# ---------------------------------------------------------------------------------------------
# Loading runs: the typed view and its checks

from pathlib import Path

import joblib
import numpy as np

from dqnrun.results import LECTURE_KEYS, SCHEMA_VERSION, MetricsFile, RunDir, load_run, read_metrics

SHIPPED = Path(__file__).resolve().parent.parent / "results"


def test_runs_written_by_the_first_release_still_load():
    run = load_run(SHIPPED / "ddqn")
    assert run.name == "ddqn" and run.variant == "ddqn" and run.env_id == "CartPole-v1"
    assert run.seeds == (12, 34, 56, 78, 90) and run.schema == 0 and run.config.agent.double
    assert run.scores.shape == (5, 250) and run.window == 25
    assert run.aggregated_seeds == run.seeds  # older files did not list them: all completed seeds
    m = run.metrics(34)
    csv = read_metrics(RunDir(SHIPPED / "ddqn").metrics(34))
    for column in ("episode", "env_steps", "train_return", "score", "epsilon"):
        np.testing.assert_allclose(m[column], csv[column], rtol=1e-5)
    np.testing.assert_allclose(m["smoothed_score"], csv["smoothed_score"], rtol=1e-5, equal_nan=True)
    records = run.to_records()
    assert len(records) == 5 * 250 and records[0]["seed"] == 12 and records[0]["episode"] == 1
    assert all(type(v) in (int, float, str) for v in records[0].values())


def test_a_lecture_file_loads_as_three_curves(tmp_path):
    curve = np.linspace(0, 1, 10)
    joblib.dump({k: curve for k in LECTURE_KEYS}, tmp_path / "nfq.joblib")
    run = load_run(tmp_path / "nfq.joblib")
    assert run.is_lecture and run.name == "nfq" and run.scores is None and run.window == 25
    with pytest.raises(UserError, match="lecture result file"):
        run.metrics(1)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(steps=d["steps"][:, :5]), "damaged: steps has shape"),
    (lambda d: d.update(scores=d["scores"][:, :5]), "damaged: episodes out of range"),
    (lambda d: d.update(seeds=[1, 2]), "damaged: seeds is not 5 integers"),
    (lambda d: d["scores"].__setitem__((0, 3), np.nan), "damaged: seed 12 has missing or non-finite scores"),
    (lambda d: d.update(status="complete"), "damaged: status is not 5 strings"),
    (lambda d: d.update(window=0), "damaged: window 0 is not a positive integer"),
    (lambda d: d.update(schema=SCHEMA_VERSION + 1), "written by a newer dqnrun"),
    (lambda d: d.pop("steps"), "damaged: no steps"),
])
def test_a_damaged_result_file_is_named(tmp_path, change, message):
    data = joblib.load(SHIPPED / "ddqn" / "results.joblib")
    change(data)
    joblib.dump(data, tmp_path / "results.joblib")
    with pytest.raises(UserError, match=message):
        load_run(tmp_path)


def test_missing_unfinished_and_foreign_runs(tmp_path):
    with pytest.raises(UserError, match="no such run"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("variant: ddqn\n")
    with pytest.raises(UserError, match="is an unfinished run .* `dqnrun train --resume"):
        load_run(tmp_path / "half")
    (tmp_path / "other").mkdir()
    with pytest.raises(UserError, match="is not a dqnrun run: it has no results.joblib"):
        load_run(tmp_path / "other")
    joblib.dump({"weights": [1]}, tmp_path / "foreign.joblib")
    with pytest.raises(UserError, match="is not a dqnrun or lecture result"):
        load_run(tmp_path / "foreign.joblib")
    whole = (SHIPPED / "ddqn" / "results.joblib").read_bytes()
    (tmp_path / "cut.joblib").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match="is truncated or not a joblib result file"):
        load_run(tmp_path / "cut.joblib")


def test_metrics_file_resumes_after_the_checkpointed_episodes(tmp_path):
    path = tmp_path / "metrics" / "seed-1.csv"
    f = MetricsFile(path)
    f.start()
    for i in range(1, 6):
        f.append({"episode": i, "env_steps": 10 * i, "score": float(i), "mean_loss": float("nan")})
        assert read_metrics(path)["episode"].tolist() == list(range(1, i + 1))  # visible at once
    f.close()
    # A checkpoint after episode 3: rows 4 and 5 are dropped, then training appends them again.
    f.start(3)
    f.append({"episode": 4, "env_steps": 41, "score": 4.5})
    f.close()
    m = read_metrics(path)
    assert m["episode"].tolist() == [1, 2, 3, 4] and m["env_steps"].tolist() == [10, 20, 30, 41]
    assert np.isnan(m["mean_loss"]).all()
    # A file with fewer rows than the checkpoint is rebuilt from the checkpoint's own rows.
    f.start(6, rows=[{"episode": i, "score": 0.0} for i in range(1, 7)])
    f.close()
    assert read_metrics(path)["episode"].tolist() == [1, 2, 3, 4, 5, 6]
    assert read_metrics(path)["env_steps"].tolist()[:4] == [10, 20, 30, 41]


def test_evaluation_files_are_named_by_the_run_directory_and_never_lost(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    assert run_dir.evaluation().name == "evaluation-best.json"
    assert run_dir.evaluation("final", seed=3).name == "evaluation-final-seed-3.json"
    assert run_dir.evaluation("best", copy=2).name == "evaluation-best-2.json"
    assert run_dir.read_evaluation() is None
    doc = {"format": "dqnrun-evaluation", "seeds": [{"seed": 1, "mean": 2.0}], "across_seeds": {"mean": 2.0},
           "created": "then"}
    assert run_dir.save_evaluation(doc) == (run_dir.evaluation(), None)
    assert run_dir.read_evaluation() == doc
    assert run_dir.save_evaluation({**doc, "created": "now"}) == (run_dir.evaluation(), None)  # same numbers
    run_dir.evaluation().write_text("not json")  # a damaged file is kept too, and named when read
    with pytest.raises(UserError, match="evaluation-best.json: damaged: not JSON"):
        run_dir.read_evaluation()
    assert run_dir.save_evaluation(doc) == (run_dir.evaluation(), run_dir.evaluation(copy=2))
    assert run_dir.evaluation(copy=2).read_text() == "not json"
    run_dir.evaluation().write_text('{"format": "other"}')
    with pytest.raises(UserError, match="is not a dqnrun evaluation file"):
        run_dir.read_evaluation()


def test_an_evaluation_kept_aside_never_overwrites_one_another_process_kept(tmp_path, monkeypatch):
    """Another `evaluate` claims evaluation-best-2.json between this one's choice of that name
    and its claim: this one takes evaluation-best-3.json and nothing is lost."""
    run_dir = RunDir(tmp_path)
    first = {"format": "dqnrun-evaluation", "seeds": [{"seed": 1, "mean": 1.0}], "across_seeds": {"mean": 1.0}}
    run_dir.save_evaluation(first)
    theirs = '{"format": "dqnrun-evaluation", "by": "the other process"}'
    real = {"rename": os.rename, "link": os.link}

    def other_process_first(name):
        def claim(src, dst, **kwargs):
            if Path(dst).name == "evaluation-best-2.json" and not Path(dst).exists():
                Path(dst).write_text(theirs)
            return real[name](src, dst, **kwargs)
        return claim

    for name in real:  # wherever the name is claimed
        monkeypatch.setattr(os, name, other_process_first(name))
    second = {**first, "across_seeds": {"mean": 2.0}}
    assert run_dir.save_evaluation(second) == (run_dir.evaluation(), run_dir.evaluation(copy=3))
    assert run_dir.evaluation(copy=2).read_text() == theirs
    assert run_dir.read_evaluation() == second
    assert json.loads(run_dir.evaluation(copy=3).read_text()) == first


@pytest.fixture
def no_hang():
    """A read that blocks (a FIFO) fails the test instead of hanging it."""
    import signal

    signal.signal(signal.SIGALRM, lambda *a: pytest.fail("timed out: a read blocked"))
    signal.alarm(30)
    yield
    signal.alarm(0)


@pytest.mark.parametrize("fifo", [".training", "metrics/seed-12.csv"])
def test_list_of_a_run_folder_with_a_fifo_answers(tmp_path, fifo, no_hang):
    """A run folder from elsewhere may hold a FIFO where a small file belongs: `dqnrun list`
    answers (the marker is ignored, a metrics file makes the run unreadable), never blocks."""
    import shutil

    from typer.testing import CliRunner

    from dqnrun.cli import app

    (tmp_path / "run" / "metrics").mkdir(parents=True)
    shutil.copy(SHIPPED / "ddqn" / "config.yaml", tmp_path / "run" / "config.yaml")
    os.mkfifo(tmp_path / "run" / fifo)
    result = CliRunner().invoke(app, ["list", str(tmp_path)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    row = " ".join(result.output.split())
    if fifo == ".training":
        assert "interrupted: 0/5 seeds done, 0/1,250 episodes" in row
    else:
        assert "unreadable:" in row and "seed-12.csv is a named pipe" in row


def test_a_training_marker_from_elsewhere_is_only_read_as_pid_and_host(tmp_path):
    import socket

    run = RunDir(tmp_path)
    host = socket.gethostname()  # this machine: the pid is checked
    for text in (f"99999999999999999999999 {host}\n", f"0 {host}\n", f"-1 {host}\n", "x" * 10_000, "1 2 3\n"):
        run.training_marker.write_text(text)
        assert not run.is_training() and not run.marked_by_me()
    run.mark_training()
    assert run.is_training() and run.marked_by_me() and run.training_owner().startswith(f"process {os.getpid()} on ")


def test_force_replaces_only_a_run_directory(tmp_path):
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "target").mkdir()
    (tmp_path / "alink").symlink_to(tmp_path / "target")
    for name in ("afile", "alink"):
        with pytest.raises(UserError, match="exists and is not a run directory; --force replaces only runs"):
            claim_run_dir(tmp_path, name, force=True)
    assert (tmp_path / "afile").read_text() == "mine" and (tmp_path / "target").is_dir()
    path, note = claim_run_dir(tmp_path, "afile")  # without --force: a new name, as for a run
    assert path == tmp_path / "afile-2"
