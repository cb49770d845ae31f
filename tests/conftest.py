"""Shared fixtures: a tiny config that trains in about a second."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests_helpers import TINY_RAW

TINY = TINY_RAW


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures a test draws without saving are closed, so no test sees another's open figures."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture
def tiny_config(tmp_path: Path):
    """Write a tiny config (optionally changed) and return its path."""

    def make(name: str = "tiny", **changes) -> Path:
        raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key].update(value)
            else:
                raw[key] = value
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    return make


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Two tiny finished runs (dqn, per) and a lecture-format file under one results directory."""
    import joblib
    import numpy as np
    from typer.testing import CliRunner

    from dqnrun.cli import app

    root = tmp_path_factory.mktemp("runs")
    results = root / "results"
    for variant in ("dqn", "per"):
        raw = {**TINY, "variant": variant, "name": variant}
        path = root / f"{variant}.yaml"
        path.write_text(yaml.safe_dump(raw))
        result = CliRunner().invoke(app, ["train", str(path), "--out", str(results), "--jobs", "1"])
        assert result.exit_code == 0, result.output
    curve = np.linspace(10, 500, 4)
    joblib.dump({"max_score": curve + 5, "min_score": curve - 5, "mean_score": curve}, results / "nfq_results.joblib")
    return results
