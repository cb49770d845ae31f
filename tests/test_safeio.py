"""Hostile files: loading never runs code from them, every refusal is one line and exit code 2.

Each crafted file is made here. Its payload would create a marker file if it were ever
unpickled by an ordinary loader; the marker must never appear.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
import yaml
from tests_helpers import TINY_RAW
from typer.testing import CliRunner

from dqnrun import safeio
from dqnrun.cli import app
from dqnrun.errors import UserError

runner = CliRunner()
UNSAFE = "not a dqnrun result file, or unsafe"


class Payload:
    """Unpickled by an ordinary loader, calls `how` with `args` (and so writes the marker)."""

    def __init__(self, how, args):
        self.how, self.args = how, args

    def __reduce__(self):
        return self.how, self.args


def payloads(marker: Path) -> dict[str, Payload]:
    return {
        "os.system": Payload(os.system, (f"touch {marker}",)),
        "builtins.exec": Payload(exec, (f"open({str(marker)!r}, 'w').close()",)),
        "subprocess.Popen": Payload(subprocess.Popen, (["touch", str(marker)],)),
    }


def lecture_like(value) -> dict:
    return {"max_score": value, "min_score": np.zeros(3), "mean_score": np.zeros(3)}


def write_payload(path: Path, kind: str, how: str, marker: Path) -> None:
    """A crafted joblib file: the payload as a value (plain pickle, joblib, zlib-compressed
    joblib) or hidden in an object array, which joblib stores as a nested pickle."""
    payload = payloads(marker)[how]
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "pickle":
        path.write_bytes(pickle.dumps(lecture_like(payload), protocol=4))
    elif kind == "joblib":
        joblib.dump(lecture_like(payload), path)
    elif kind == "zlib":
        joblib.dump(lecture_like(payload), path, compress=3)
    elif kind == "object-array":
        joblib.dump(lecture_like(np.array([payload, 1], dtype=object)), path)


def make_run(root: Path, name: str = "run") -> Path:
    run = root / name
    (run / "seeds").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({**TINY_RAW, "name": name, "seeds": [3, 4]}))
    return run


@pytest.fixture
def wide(monkeypatch):
    """`list` prints a table: wide enough for a whole error message in its status column."""
    monkeypatch.setenv("COLUMNS", "500")


@pytest.fixture
def alarm():
    """A test that would hang (a FIFO, an expanding file) fails instead."""
    signal.signal(signal.SIGALRM, lambda *a: pytest.fail("timed out: a read blocked or did not end"))
    signal.alarm(60)
    yield
    signal.alarm(0)


def one_line(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Code execution: results.joblib, seeds/*.joblib and checkpoints, through every command


KINDS = ["pickle", "joblib", "zlib", "object-array"]
HOWS = ["os.system", "builtins.exec", "subprocess.Popen"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("command", ["compare", "plot", "list"])
def test_a_crafted_results_file_runs_no_code(tmp_path, alarm, wide, kind, how, command):
    marker = tmp_path / "marker"
    run = make_run(tmp_path / "results")
    write_payload(run / "results.joblib", kind, how, marker)
    if command == "list":
        result = runner.invoke(app, ["list", str(tmp_path / "results")], env={"COLUMNS": "400"})
        assert result.exit_code == 0, result.output
        assert "unreadable" in result.output and UNSAFE in result.output
    else:
        args = [command, str(run)] + (["-o", str(tmp_path / "fig.png")] if command == "plot" else [])
        line = one_line(runner.invoke(app, args, env={"COLUMNS": "400"}))
        assert UNSAFE in line and str(run / "results.joblib") in line
    assert not marker.exists()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", HOWS)
def test_a_crafted_seed_file_runs_no_code_on_resume(tmp_path, alarm, kind, how):
    marker = tmp_path / "marker"
    run = make_run(tmp_path)
    write_payload(run / "seeds" / "seed-3.joblib", kind, how, marker)
    (run / "seeds" / "seed-4.joblib").write_bytes((run / "seeds" / "seed-3.joblib").read_bytes())
    line = one_line(runner.invoke(app, ["train", "--resume", str(run)], env={"COLUMNS": "400"}))
    assert UNSAFE in line and "seed-3.joblib" in line
    assert not marker.exists()


@pytest.mark.parametrize("how", HOWS)
def test_a_crafted_checkpoint_runs_no_code_on_resume(tmp_path, alarm, how):
    marker = tmp_path / "marker"
    run = make_run(tmp_path)
    (run / "checkpoints").mkdir()
    torch.save({"format": "dqnrun-checkpoint", "seed": 3, "x": payloads(marker)[how]},
               run / "checkpoints" / "seed-3.pt")
    line = one_line(runner.invoke(app, ["train", "--resume", str(run)], env={"COLUMNS": "400"}))
    assert "seed-3.pt is truncated or not a dqnrun checkpoint file; delete it" in line
    assert not marker.exists()


@pytest.mark.parametrize("how", HOWS)
def test_a_crafted_model_runs_no_code(tmp_path, alarm, how):
    marker = tmp_path / "marker"
    run = make_run(tmp_path)
    (run / "models").mkdir()
    torch.save({"format": "dqnrun-model", "x": payloads(marker)[how]}, run / "models" / "seed-3.pt")
    line = one_line(runner.invoke(app, ["evaluate", str(run)], env={"COLUMNS": "400"}))
    assert "is truncated or not a dqnrun model file" in line
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# What the allow-list unpickler loads, and what it refuses


def test_the_lectures_files_and_every_shipped_run_load_as_with_joblib(tmp_path):
    curve = np.linspace(10, 500, 226)
    joblib.dump({"max_score": curve + 5, "min_score": curve - 5, "mean_score": curve}, tmp_path / "lecture.joblib")
    shipped = sorted((Path(__file__).parent.parent / "results").rglob("*.joblib"))
    assert shipped
    for path in [tmp_path / "lecture.joblib", *shipped]:
        ours, theirs = safeio.load_joblib(path), joblib.load(path)
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            if isinstance(value, (np.ndarray, list)) and key != "status":
                np.testing.assert_array_equal(ours[key], value)
            else:
                assert ours[key] == value


VALUES = {
    "containers": {"a": [1, 2.5, None, True], "b": (1, "x"), "c": {1, 2}, "d": frozenset([3]), "e": b"raw"},
    "numbers": {"f": np.float64(1.5), "i": np.int64(-3), "z": 1 + 2j, "big": 2**100},
    "arrays": {"c": np.arange(6.0).reshape(2, 3), "f": np.asfortranarray(np.ones((3, 2))),
               "big-endian": np.arange(4, dtype=">i4"), "empty": np.zeros((0, 4)), "bool": np.array([True])},
}


@pytest.mark.parametrize("writer", ["joblib", "joblib-zlib", "joblib-gzip", "joblib-bz2", "joblib-xz",
                                    "pickle-0", "pickle-2", "pickle-4", "pickle-5"])
@pytest.mark.parametrize("name", sorted(VALUES))
def test_plain_data_loads_from_every_writer(tmp_path, writer, name):
    value, path = VALUES[name], tmp_path / "file"
    if writer == "joblib":
        joblib.dump(value, path)
    elif writer.startswith("joblib-"):
        joblib.dump(value, path, compress=(writer.split("-")[1], 3))
    else:
        path.write_bytes(pickle.dumps(value, protocol=int(writer.split("-")[1])))
    loaded = safeio.load_joblib(path)
    assert loaded.keys() == value.keys()
    for key, expected in value.items():
        if isinstance(expected, np.ndarray):
            assert (loaded[key].dtype.kind, loaded[key].dtype.itemsize) == (expected.dtype.kind, expected.dtype.itemsize)
            np.testing.assert_array_equal(loaded[key], expected)
        else:
            assert loaded[key] == expected and type(loaded[key]) is type(expected)


class Gadget:  # an importable class that is not on the allow-list
    pass


def nested_shared(depth: int, width: int) -> bytes:
    """A small pickle whose containers are shared so that walking it visits width**depth nodes."""
    node: list = []
    for _ in range(depth):
        node = [node] * width
    return pickle.dumps({"max_score": node}, protocol=4)


def huge_array_header() -> bytes:
    """A joblib array header that claims 2**40 float64s, followed by 8 bytes of data."""
    from joblib.numpy_pickle import NumpyArrayWrapper

    wrapper = NumpyArrayWrapper(np.ndarray, (2**40,), "C", np.dtype("f8"), numpy_array_alignment_bytes=None)
    return pickle.dumps({"max_score": wrapper}, protocol=2) + bytes(8)


REFUSED = [
    ("another class", lambda: pickle.dumps({"x": Gadget()}), "it names test_safeio.Gadget"),
    ("a numpy function", lambda: pickle.dumps(Payload(np.load, ("x",))), "it names numpy.load"),
    ("ndarray called directly", lambda: pickle.dumps(Payload(np.ndarray, ((10**6,),))), "truncated"),
    ("a shared container bomb", lambda: nested_shared(30, 10), "a container referenced twice"),
    ("a huge array header", huge_array_header, "an array larger than the file"),
    ("an object array in a plain pickle", lambda: pickle.dumps(np.array([1, None], dtype=object)),
     "an object dtype"),
    ("bytes() of a size", lambda: pickle.dumps(Payload(bytes, (10**12,))), "a bytes() call with arguments"),
]


@pytest.mark.parametrize("data, message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_anything_else_is_refused_with_one_line(tmp_path, data, message):
    path = tmp_path / "results.joblib"
    path.write_bytes(data())
    with pytest.raises(UserError) as err:
        safeio.load_joblib(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_decompression_bomb_stops_at_the_cap(tmp_path):
    path = tmp_path / "bomb.joblib"
    joblib.dump({"max_score": [np.zeros(1 << 16) for _ in range(32)]}, path, compress=9)  # 16 MiB of zeros
    assert path.stat().st_size < 1 << 16
    with pytest.raises(UserError, match="more data than a result file holds"):
        safeio.load_joblib(path, max_bytes=1 << 20)


@pytest.mark.parametrize("command", ["compare", "plot", "list"])
def test_a_fifo_or_a_device_is_refused_without_blocking(tmp_path, alarm, wide, command):
    run = make_run(tmp_path / "results")
    os.mkfifo(run / "results.joblib")
    other = make_run(tmp_path / "results", "dev")
    (other / "results.joblib").symlink_to("/dev/zero")
    if command == "list":
        result = runner.invoke(app, ["list", str(tmp_path / "results")], env={"COLUMNS": "400"})
        text = " ".join(result.output.split())
        assert result.exit_code == 0 and text.count("must be a regular file") == 2, result.output
        assert "is a named pipe" in text and "is a device" in text
        return
    for target in (run, other):
        line = one_line(runner.invoke(app, [command, str(target)], env={"COLUMNS": "400"}))
        assert f"results.joblib is {'a named pipe' if target == run else 'a device'}; a result file must be" in line


# ---------------------------------------------------------------------------------------------
# Writes: an existing file needs --force; a directory, a missing folder, a read-only or full
# disk is one line naming the path and the cause


@pytest.fixture
def outputs(tmp_path, trained):
    (tmp_path / "exists.png").write_bytes(b"keep")
    (tmp_path / "exists.gif").write_bytes(b"keep")
    (tmp_path / "adir.png").mkdir()
    return {"tmp": str(tmp_path), "run": str(trained / "dqn")}


OUTPUT_CASES = [
    (["plot", "{run}", "-o", "{tmp}/exists.png"], "exists.png already exists; add --force to replace it"),
    (["compare", "{run}", "--plot", "{tmp}/exists.png"], "exists.png already exists; add --force to replace it"),
    (["watch", "{run}", "--record", "{tmp}/exists.gif"], "exists.gif already exists; add --force to replace it"),
    (["plot", "{run}", "-o", "{tmp}/adir.png"], "adir.png: it is a directory; name a file inside it"),
    (["plot", "{run}", "-o", "{tmp}/nowhere/x.png"], "nowhere (no such directory)"),
    (["watch", "{run}", "--record", "{tmp}/nowhere/x.gif"], "nowhere (no such directory)"),
    (["plot", "{run}", "-o", "{tmp}/t.png", "--title", "$\\frac{{$"],
     "t.png: matplotlib cannot read the math in a title or label"),
]


@pytest.mark.parametrize("args, message", OUTPUT_CASES, ids=[" ".join(a[::2]) + a[-1][-12:] for a, _ in OUTPUT_CASES])
def test_an_output_that_cannot_be_written_is_one_line_and_nothing_is_touched(outputs, args, message):
    line = one_line(runner.invoke(app, [a.format(**outputs) for a in args], env={"COLUMNS": "400"}))
    assert message in line
    assert (Path(outputs["tmp"]) / "exists.png").read_bytes() == b"keep"


def test_force_replaces_an_existing_output(outputs):
    result = runner.invoke(app, ["plot", outputs["run"], "-o", f"{outputs['tmp']}/exists.png", "--force"])
    assert result.exit_code == 0, result.output
    assert (Path(outputs["tmp"]) / "exists.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs and a read-only one (needs root; skipped otherwise)."""
    full, ro = tmp_path / "full", tmp_path / "ro"
    full.mkdir(), ro.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = []
    for path, options in ((full, "size=64k"), (ro, "ro,size=64k")):
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
            for m in mounted:
                subprocess.run(["umount", str(m)])
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(path)
    yield full, ro
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)])


@pytest.mark.parametrize("command", ["plot", "compare", "watch"])
@pytest.mark.parametrize("disk, cause", [("full", "disk full"), ("ro", "read-only file system")])
def test_a_full_or_read_only_disk_is_one_line(small_disk, trained, command, disk, cause):
    full, ro = small_disk
    where = full if disk == "full" else ro
    if disk == "full":
        (full / "filler").write_bytes(bytes(60 * 1024))
    target = {"plot": ["-o", str(where / "x.png")], "compare": ["--plot", str(where / "x.png")],
              "watch": ["--record", str(where / "x.gif")]}[command]
    result = runner.invoke(app, [command, str(trained / "dqn"), *target], env={"COLUMNS": "400"})
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{where / ('x.gif' if command == 'watch' else 'x.png')}: {cause}" in result.output.splitlines()[-1]
    assert sorted(p.name for p in where.iterdir()) == (["filler"] if disk == "full" else [])


def test_training_onto_a_full_disk_stops_with_one_line_and_keeps_the_checkpoint(small_disk, tmp_path):
    full, _ = small_disk
    config = tmp_path / "big.yaml"
    config.write_text(yaml.safe_dump({**TINY_RAW, "seeds": [3], "episodes": 40, "checkpoint_every": 5}))
    result = runner.invoke(app, ["train", str(config), "--out", str(full), "--jobs", "1"], env={"COLUMNS": "400"})
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert "big/checkpoints/seed-3.pt: disk full; stopped, with each seed's last checkpoint kept" in last
    from dqnrun.chunks import decode_checkpoint

    kept = (full / "big" / "checkpoints" / "seed-3.pt").read_bytes()
    episode = decode_checkpoint(kept)["episode"]  # the one before the failed write, whole
    assert episode >= 5 and episode % 5 == 0
    assert not list((full / "big").rglob("*.tmp*"))


def test_a_run_directory_deleted_during_training_stops_the_run(tmp_path):
    import shutil
    import sys
    import time

    config = tmp_path / "gone.yaml"
    config.write_text(yaml.safe_dump({**TINY_RAW, "seeds": [3], "episodes": 300, "checkpoint_every": 2,
                                      "eval_episodes": 1}))
    out = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "dqnrun.cli", "train", str(config), "--out", str(out), "--jobs", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "300"})
    deadline = time.time() + 120
    while proc.poll() is None and not (out / "gone" / "checkpoints").is_dir() and time.time() < deadline:
        time.sleep(0.05)
    # The run may write a file while rmtree walks the folder, which then stays: delete until gone.
    while (out / "gone").exists() and time.time() < deadline:
        shutil.rmtree(out / "gone", ignore_errors=True)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    assert "was deleted or emptied during training (no config.yaml)" in output.strip().splitlines()[-1]
    assert not (out / "gone").exists()  # nothing written after the deletion


# ---------------------------------------------------------------------------------------------
# Names are names


@pytest.mark.parametrize("name", ["2024", "null", "[oops]", "[bold]x", "a$b$c", "x$^$y"])
def test_names_are_plain_strings_printed_literally(tmp_path, monkeypatch, name):
    monkeypatch.setenv("COLUMNS", "400")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY_RAW, "seeds": [3], "episodes": 3, "window": 2}))
    out = tmp_path / "results"
    result = runner.invoke(app, ["train", str(config), "--out", str(out), "--name", name, "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert f"saved {out / name}" in result.output and (out / name / "results.joblib").is_file()
    for args in (["list", str(out)], ["compare", str(out / name)], ["plot", str(out / name), "-o", str(tmp_path / "f.png")]):
        shown = runner.invoke(app, args)
        assert shown.exit_code == 0, shown.output
        assert name in shown.output or args[0] == "plot", shown.output


def test_force_refuses_a_run_another_process_is_training(tmp_path):
    import socket

    config = tmp_path / "busy.yaml"
    config.write_text(yaml.safe_dump({**TINY_RAW, "seeds": [3], "episodes": 3, "window": 2}))
    run = tmp_path / "results" / "busy"
    run.mkdir(parents=True)
    (run / ".training").write_text(f"{os.getppid()} {socket.gethostname()}\n")  # a live process, not us
    line = one_line(runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "results"), "--force"],
                                  env={"COLUMNS": "400"}))
    assert "is being trained by another dqnrun process" in line
    assert (run / ".training").exists()


def test_markup_in_a_stored_name_is_printed_literally(tmp_path, monkeypatch, trained):
    monkeypatch.setenv("COLUMNS", "400")
    data = joblib.load(trained / "dqn" / "results.joblib")
    run = tmp_path / "results" / "[bold]run[dim]"  # list and compare name a run by its folder
    run.mkdir(parents=True)
    joblib.dump({**data, "name": "[/oops] [bold]"}, run / "results.joblib")
    for args in (["list", str(tmp_path / "results")], ["compare", str(run)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
        assert "[bold]run[dim]" in result.output


# ---------------------------------------------------------------------------------------------
# Damaged but loadable files: "damaged: <what>" in every command, "unreadable" in list


def _damage(key, value):
    return lambda d: d.__setitem__(key, value(d) if callable(value) else value)


DAMAGED = [
    ("a missing key", lambda d: d.pop("scores"), "damaged: no scores"),
    ("a wrong type", _damage("scores", "many"), "damaged: scores is not numbers"),
    ("mismatched lengths", _damage("steps", lambda d: d["steps"][:, :2]), "damaged: steps has shape"),
    ("short curves", _damage("mean_score", lambda d: d["mean_score"][:1]), "damaged: max_score, min_score and mean_score differ"),
    ("a window past the run", _damage("window", 10**9), "damaged: window 1000000000 is longer than the run"),
    ("a broken config", lambda d: d["config"].__setitem__("agent", 5), "damaged: config: agent must be a section"),
    ("a name with a newline", _damage("name", "a\nb"), "damaged: name is not a run name"),
]


@pytest.mark.parametrize("change, message", [c[1:] for c in DAMAGED], ids=[c[0] for c in DAMAGED])
def test_a_damaged_run_is_named_by_every_command(tmp_path, trained, wide, change, message):
    data = joblib.load(trained / "dqn" / "results.joblib")
    change(data)
    run = tmp_path / "results" / "run"
    run.mkdir(parents=True)
    joblib.dump(data, run / "results.joblib")
    for args in (["compare", str(run)], ["plot", str(run), "-o", str(tmp_path / "f.png")]):
        line = one_line(runner.invoke(app, args))
        assert f"{run / 'results.joblib'}: {message}" in line
    listed = runner.invoke(app, ["list", str(tmp_path / "results")])
    assert listed.exit_code == 0 and f"unreadable: {run / 'results.joblib'}: {message}" in listed.output


def test_a_latin1_config_is_one_line_for_resume_and_unreadable_in_list(tmp_path, wide):
    run = tmp_path / "results" / "café"
    run.mkdir(parents=True)
    (run / "config.yaml").write_bytes("variant: dqn\nname: café\n".encode("latin-1"))
    line = one_line(runner.invoke(app, ["train", "--resume", str(run)]))
    assert "config.yaml: not UTF-8 text (byte 22); save it as UTF-8" in line
    listed = runner.invoke(app, ["list", str(tmp_path / "results")])
    assert listed.exit_code == 0 and "unreadable: " in listed.output and "not UTF-8 text" in listed.output


@pytest.fixture
def interrupted(tmp_path):
    """A run of seeds 3 and 4 stopped after 4 of 8 episodes, each with its checkpoint."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**TINY_RAW, "episodes": 8, "checkpoint_every": 4}))
    from dqnrun import experiment
    from dqnrun.chunks import ChunkTask, run_chunk

    plan = experiment.start_run(config, out=tmp_path / "results", jobs=1)
    for seed in (3, 4):
        chunk = run_chunk(ChunkTask(plan.config, seed, plan.spec, "cpu", None))
        (plan.run_dir / "checkpoints").mkdir(exist_ok=True)
        (plan.run_dir / "checkpoints" / f"seed-{seed}.pt").write_bytes(chunk.checkpoint)
    (plan.run_dir / ".training").unlink()
    return plan.run_dir


def test_a_checkpoint_of_another_seed_or_network_stops_the_resume(interrupted):
    cp = interrupted / "checkpoints"
    (cp / "seed-4.pt").write_bytes((cp / "seed-3.pt").read_bytes())
    line = one_line(runner.invoke(app, ["train", "--resume", str(interrupted)], env={"COLUMNS": "400"}))
    assert "seed-4.pt: the checkpoint is of seed 3, not of seed 4; delete it" in line
    (cp / "seed-4.pt").unlink()
    config = yaml.safe_load((interrupted / "config.yaml").read_text())
    config["network"]["hidden"] = [64]
    (interrupted / "config.yaml").write_text(yaml.safe_dump(config))
    line = one_line(runner.invoke(app, ["train", "--resume", str(interrupted)], env={"COLUMNS": "400"}))
    assert "seed-3.pt: the checkpoint was written with another config (it differs in network.hidden)" in line


@pytest.mark.parametrize("change, message", [
    (lambda b: b.__setitem__("env_id", "this:Foo-v0"),
     "names the environment 'this:Foo-v0', which would import the Python module 'this'; "
     "if you trust it, run with DQNRUN_TRUST_MODULES=this"),
    (lambda b: b["network"].__setitem__("hidden", [10**6, 10**6]), "damaged: its network would have 1,000,00"),
], ids=["a module to import", "a huge network"])
def test_a_model_file_chooses_no_module_and_no_allocation(tmp_path, trained, change, message):
    blob = torch.load(trained / "dqn" / "models" / "seed-3.pt", weights_only=True)
    change(blob)
    (tmp_path / "run" / "models").mkdir(parents=True)
    torch.save(blob, tmp_path / "run" / "models" / "seed-3.pt")
    for command in (["evaluate", "-n", "1"], ["watch", "--record", str(tmp_path / "x.gif")]):
        line = one_line(runner.invoke(app, [command[0], str(tmp_path / "run"), *command[1:]], env={"COLUMNS": "400"}))
        assert message in line


@pytest.mark.parametrize("at_episode", [1, 2, 3])
def test_a_run_directory_deleted_between_writes_is_named_whichever_write_fails(tmp_path, at_episode):
    import shutil

    from dqnrun import experiment
    from dqnrun.errors import Fault
    from dqnrun.trainer import EpisodeEnd

    plan = experiment.start_run({**TINY_RAW, "name": "gone", "seeds": [3], "episodes": 6, "checkpoint_every": 2},
                                out=tmp_path, jobs=1)

    def delete(event):
        if isinstance(event, EpisodeEnd) and event.episode == at_episode:
            shutil.rmtree(plan.run_dir)

    with pytest.raises(Fault, match=r"gone was deleted or emptied during training \(no config.yaml\)"):
        experiment.execute(plan, delete)
    assert not plan.run_dir.exists()
