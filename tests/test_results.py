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
