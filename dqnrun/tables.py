"""The `compare` table in four forms: rich text (80 columns, or --wide), markdown, CSV and JSON.

CSV and JSON carry numbers as numbers: one column per value (CI bounds apart, seconds as
seconds), empty (null) where there is none, so pandas reads every numeric column as numeric.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

from dqnrun.stats import EPISODE_EVAL, STEP_EVAL, TRAIN_RETURN, Comparison, Summary, thousands

FORMATS = ("table", "markdown", "csv", "json")

# The columns of the machine formats, in order (one record per run).
RECORD_KEYS = (
    "run", "path", "variant", "env", "seeds", "diverged", "episodes", "run_episodes", "window",
    "final", "final_ci_low", "final_ci_high", "iqm", "best", "threshold", "to_threshold", "reached",
    "never", "auc", "env_steps", "wall_time_s", "baseline", "p_improvement", "normalised",
    "score_kind", "eval_every_steps", "final_of",
    "evaluated", "evaluated_ci_low", "evaluated_ci_high", "evaluated_episodes",
)


def _number(value: Any) -> Any:
    """None for a missing or non-finite number, else a plain int or float."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    # Four decimals: more than any score or second needs, without float noise (491.34400000000005).
    return int(value) if value.is_integer() and abs(value) < 2**53 else round(value, 4)


def swept(comparison: Comparison) -> dict[str, dict[str, str]]:
    """Runs that are points of a sweep: the swept keys (`sweep.variant` where the key is also a
    column of its own) and each run's value, by run path."""
    from dqnrun.sweep import swept_columns

    columns = swept_columns([s.path for s in comparison.rows if not s.lecture])
    return {(f"sweep.{k}" if k in RECORD_KEYS else k): v for k, v in columns.items()}


def records(comparison: Comparison) -> list[dict[str, Any]]:
    """One plain dict per run, numbers as numbers (None where there is none)."""
    base = comparison.rows[comparison.baseline].name if comparison.baseline is not None else None
    sweep_values = swept(comparison)
    out = []
    for s in comparison.rows:
        ci = s.final_ci if s.final_ci is not None and (s.n_seeds or 0) > 1 else (None, None)
        out.append({
            "run": s.name, "path": s.path, "variant": s.variant, "env": s.env_id,
            "seeds": s.n_seeds, "diverged": s.diverged if not s.lecture else None,
            "episodes": s.episodes, "run_episodes": s.run_episodes, "window": s.window,
            "final": _number(s.final_mean), "final_ci_low": _number(ci[0]), "final_ci_high": _number(ci[1]),
            "iqm": _number(s.iqm), "best": _number(s.best), "threshold": _number(s.threshold),
            "to_threshold": _number(s.to_threshold), "reached": s.reached, "never": s.never,
            "auc": _number(s.auc), "env_steps": _number(s.env_steps), "wall_time_s": _number(s.wall_time),
            "baseline": base, "p_improvement": _number(s.p_improvement), "normalised": _number(s.normalised),
            # Which curve the scores come from, its evaluation interval, and how many of its last
            # points (scores or evaluations) per seed the final score averages.
            "score_kind": s.kind, "eval_every_steps": s.eval_every, "final_of": s.last or None,
            # `dqnrun evaluate`'s saved measurement of the best models (evaluation-best.json), if any.
            "evaluated": _number(s.evaluated), "evaluated_ci_low": _number(s.evaluated_ci[0]),
            "evaluated_ci_high": _number(s.evaluated_ci[1]), "evaluated_episodes": s.evaluated_episodes,
            **{key: values.get(s.path) for key, values in sweep_values.items()},
        })
    return out


def to_csv(comparison: Comparison) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*RECORD_KEYS, *swept(comparison)], lineterminator="\n")
    writer.writeheader()
    for record in records(comparison):
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return buf.getvalue()


def to_json(comparison: Comparison) -> str:
    doc = {
        "runs": records(comparison),
        "baseline": comparison.rows[comparison.baseline].name if comparison.baseline is not None else None,
        "normalisation": {env: {"zero": low, "one": high, "source": source}
                          for env, (low, high, source) in comparison.normalisation.items()},
        "aggregate": [{"variant": a.variant, "envs": a.envs, "runs": a.n_runs, "iqm": _number(a.iqm),
                       "iqm_ci_low": _number(a.iqm_ci[0]), "iqm_ci_high": _number(a.iqm_ci[1]),
                       "mean": _number(a.mean)} for a in comparison.aggregates],
        "notes": comparison.notes,
    }
    return json.dumps(doc, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------
# Text and markdown


def num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def seconds(s: float) -> str:
    if not math.isfinite(s):
        return "-"
    return f"{s:.1f}s" if s < 60 else f"{int(s // 60)}m{int(s % 60):02d}s"


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Summary], str]
    wide_only: bool = False
    numeric: bool = True
    drop: int = 0  # on a narrow terminal, columns are hidden in this order (1 first; 0: never)


def columns(comparison: Comparison, wide: bool, short: bool = True) -> list[Column]:
    rows = comparison.rows
    multi_env = len(comparison.envs) > 1
    thresholds = {s.threshold for s in rows if not s.lecture}
    target = f"to {num(thresholds.pop(), 0)}" if len(thresholds) == 1 and None not in thresholds else "to thr."
    cols = [Column("run", lambda s: s.name, numeric=False)]
    for key, values in swept(comparison).items():  # a sweep's points: their swept values
        if key == "config" and all(values.get(s.path) == s.name for s in rows):
            continue  # each point named after its config: the column would repeat `run`
        cols.append(Column(key.rsplit(".", 1)[-1], lambda s, v=values: v.get(s.path, "-"), numeric=False))
    cols.append(Column("variant", lambda s: s.variant, wide_only=True, numeric=False))
    kinds = {curve_cell(s) for s in rows}
    if any(s.kind != EPISODE_EVAL for s in rows):  # which curve each row's scores come from
        # One kind for every row repeats the title: then it is the first column to go when narrow.
        cols.append(Column("curve", curve_cell, numeric=False, drop=1 if len(kinds) == 1 else 0))
    if multi_env:
        cols.append(Column("env", lambda s: s.env_id, numeric=False))
    cols += [
        Column("seeds", seeds_cell, wide_only=not any(s.diverged for s in rows), drop=5),
        Column("episodes", episodes_cell, drop=4,
               wide_only=not any(s.episodes != s.run_episodes or len(set(s.seed_episodes)) > 1 for s in rows)),
        Column("final", lambda s: num(s.final_mean)),
        Column("95% CI", ci_cell, drop=6),
        Column("IQM", lambda s: num(s.iqm), drop=1),
        Column("best", lambda s: num(s.best), wide_only=True),
        Column(target, reached_cell, drop=3),
        Column("reached", lambda s: "-" if s.reached is None else f"{s.reached}/{s.n_seeds}", drop=2),
        Column("AUC", lambda s: num(s.auc), wide_only=True),
        Column("env steps", lambda s: num(s.env_steps, 0), wide_only=True),
        Column("wall/seed", lambda s: seconds(s.wall_time), wide_only=True),
    ]
    if any(math.isfinite(s.evaluated) for s in rows):  # `dqnrun evaluate` saved a measurement
        cols.append(Column("evaluated", evaluated_cell, drop=5))
    if multi_env:
        cols.append(Column("norm.", lambda s: num(s.normalised, 2)))
    # P(>) only where some run shares the baseline's environment: a column of "-" says nothing.
    if comparison.baseline is not None and any(math.isfinite(s.p_improvement) for s in rows):
        cols.append(Column(poi_header(comparison, short), lambda s: num(s.p_improvement, 2), drop=7))
    return [c for c in cols if wide or not c.wide_only]


def poi_header(comparison: Comparison, short: bool = True) -> str:
    """P(>A) with the baseline's label, or P(>base) on a terminal when the label is long."""
    base = comparison.rows[comparison.baseline].name
    return f"P(>{base})" if len(base) <= 10 or not short else "P(>base)"


CURVE_CELLS = {EPISODE_EVAL: "per episode", TRAIN_RETURN: "train return"}


def curve_cell(s: Summary) -> str:
    """The kind of score a row uses: "every 5k steps" (evaluations), "per episode", "train return"."""
    if s.kind == STEP_EVAL:
        return f"every {thousands(s.eval_every)} steps" if s.eval_every else "step evals"
    return CURVE_CELLS.get(s.kind, s.kind)


def evaluated_cell(s: Summary) -> str:
    low, high = s.evaluated_ci
    if low is None or high is None:
        return num(s.evaluated)
    return f"{num(s.evaluated)} [{num(low)}, {num(high)}]"


def seeds_cell(s: Summary) -> str:
    text = "-" if s.n_seeds is None else str(s.n_seeds)
    return text + (f" ({s.diverged} diverged)" if s.diverged else "")


def episodes_cell(s: Summary) -> str:
    """Episodes compared: `60-65` where the seeds ended after different numbers of episodes,
    `50 of 250` where the run was cut to a shorter one."""
    lo, hi = s.seed_episodes
    compared = f"{lo}-{hi}" if lo < hi else str(s.episodes)
    return compared if s.episodes >= s.run_episodes else f"{compared} of {s.run_episodes}"


def ci_cell(s: Summary) -> str:
    if s.final_ci is None or (s.n_seeds or 0) < 2:
        return "-"
    return f"[{num(s.final_ci[0])}, {num(s.final_ci[1])}]"


def reached_cell(s: Summary) -> str:
    if s.never is not None and s.never == s.n_seeds:
        return "never"
    return num(s.to_threshold, 0)


def cells(comparison: Comparison, wide: bool) -> tuple[list[Column], list[list[str]]]:
    cols = columns(comparison, wide, short=False)
    return cols, [[c.cell(s) for c in cols] for s in comparison.rows]


def title(comparison: Comparison, last: int | None, headers: list[str]) -> str:
    envs = comparison.envs
    where = f" on {envs[0]}" if len(envs) == 1 else ""
    episodic = [s for s in comparison.rows if s.kind != STEP_EVAL]
    stepped = [s for s in comparison.rows if s.kind == STEP_EVAL]
    windows = {s.window for s in episodic}
    parts = []
    if episodic and (last or len(windows) == 1):
        parts.append(f"mean of each seed's last {last or windows.pop()} scores")
    elif episodic:
        parts.append("mean of each seed's last scores (as many as the run's window)")
    if stepped:  # the evaluation curve, not smoothed
        parts.append(f"mean of each seed's last {last} evaluations" if (last or 1) > 1
                     else "each seed's last evaluation")
    if episodic and stepped:
        parts = [f"{parts[0]} (per-episode curves), {parts[1]} (curves evaluated every N env steps)"]
    text = f"runs{where}: final = {parts[0]}"
    if "95% CI" in headers:
        text += ", 95% bootstrap CI over seeds"
    if any(h.startswith("to ") for h in headers):
        if episodic:
            text += "; to T = median episode at which the smoothed curve reached T"
        if stepped:
            text += (" (or in which the first evaluation reaching T ran)" if episodic
                     else "; to T = median episode in which a seed's first evaluation reaching T ran")
    if any(h.startswith("P(>") for h in headers):
        if poi_header(comparison) == "P(>base)":
            text += f"; P(>base) = probability of improvement over {comparison.rows[comparison.baseline].name}"
        else:
            text += "; P(>A) = probability of improvement over A"
    if "evaluated" in headers:
        episodes = {s.evaluated_episodes for s in comparison.rows if math.isfinite(s.evaluated)}
        n = next(iter(episodes)) if len(episodes) == 1 else None
        each = f"{n} greedy episode{'' if n == 1 else 's'}" if n is not None else "greedy episodes"
        text += (f"; evaluated = `dqnrun evaluate` of the best models ({each} per seed): mean over seeds "
                 "[95% bootstrap CI]")
    if "norm." in headers:
        text += "; norm. = normalised final"
    return text


def aggregate_title() -> str:
    return ("across environments, per variant: normalised final score, 0 = a random policy and "
            "1 = the reference (the reward threshold); IQM with a stratified bootstrap 95% CI")


def aggregate_cells(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    headers = ["variant", "envs", "runs", "IQM", "95% CI", "mean"]
    rows = [[a.variant, str(len(a.envs)), str(a.n_runs), num(a.iqm, 2),
             f"[{num(a.iqm_ci[0], 2)}, {num(a.iqm_ci[1], 2)}]", num(a.mean, 2)] for a in comparison.aggregates]
    return headers, rows


def normalisation_cells(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    headers = ["env", "score of 0", "score of 1", "from"]
    rows = [[env, num(low), num(high), source] for env, (low, high, source) in comparison.normalisation.items()]
    return headers, rows


def to_markdown(comparison: Comparison, wide: bool = False) -> str:
    cols, rows = cells(comparison, wide)
    lines = [markdown_table([c.header for c in cols], rows, [c.numeric for c in cols])]
    if comparison.aggregates:
        headers, agg = aggregate_cells(comparison)
        lines += ["", markdown_table(headers, agg, [False, True, True, True, True, True])]
        headers, norm = normalisation_cells(comparison)
        lines += ["", markdown_table(headers, norm, [False, True, True, False])]
    return "\n".join(lines) + "\n"


def markdown_table(headers: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def print_comparison(console: Any, comparison: Comparison, last: int | None, wide: bool = False) -> None:
    """Print the tables on `console`. Numbers never wrap or get cut: on a narrow terminal the
    less important columns are hidden (the title says which); with `wide` every column is shown,
    wider than the terminal if need be."""
    from rich import box
    from rich.markup import escape  # run names and env ids are printed as they are, "[x]" too
    from rich.table import Table

    every = columns(comparison, wide)

    def build(cols: list[Column]) -> Any:
        table = Table(title=escape(title(comparison, last, [c.header for c in cols])), title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        for c in cols:
            if c.numeric:
                table.add_column(c.header, justify="right", no_wrap=True)
            else:
                longest = max(len(c.cell(s)) for s in comparison.rows)
                table.add_column(c.header, justify="left", overflow="fold", min_width=min(longest, 24))
        for s in comparison.rows:
            table.add_row(*[escape(c.cell(s)) for c in cols])
        return table

    def fits(table: Any) -> bool:
        return wide or natural_width(console, table) <= console.width

    cols, victims = every, []
    table = build(cols)
    while not fits(table) and any(c.drop for c in cols):
        victims.append(min((c for c in cols if c.drop), key=lambda c: c.drop))
        cols = [c for c in cols if c is not victims[-1]]
        table = build(cols)
    # A column hidden early may fit once a wider one is hidden too: the more important first.
    for victim in reversed(victims[:-1]):
        trial = [c for c in every if c in cols or c is victim]
        if fits(candidate := build(trial)):
            cols, table = trial, candidate
    hidden = [c.header for c in victims if c not in cols]
    if hidden:
        table.title += escape(f" ({', '.join(hidden)}") + f" hidden at this width; --wide shows every column)"
    print_table(console, table, wide)
    if comparison.aggregates:
        headers, agg = aggregate_cells(comparison)
        t = Table(title=aggregate_title(), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for i, h in enumerate(headers):
            t.add_column(h, justify="left" if i == 0 else "right", no_wrap=i > 0, overflow="fold")
        for row in agg:
            t.add_row(*map(escape, row))
        print_table(console, t, wide)
        headers, norm = normalisation_cells(comparison)
        n = Table(title="normalisation", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for i, h in enumerate(headers):
            n.add_column(h, justify="right" if i in (1, 2) else "left", no_wrap=i in (1, 2), overflow="fold")
        for row in norm:
            n.add_row(*map(escape, row))
        print_table(console, n, wide)


def natural_width(console: Any, table: Any) -> int:
    """The width `table` takes when nothing has to wrap or be cut."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(10_000), table).maximum


def print_table(console: Any, table: Any, wide: bool) -> None:
    """Print `table`; with `wide`, at its natural width even past the terminal's, never cut."""
    from rich.console import Console

    width = natural_width(console, table)
    if not wide or width <= console.width:
        console.print(table)
        return
    Console(width=width, file=console.file, force_terminal=console.is_terminal, no_color=console.no_color,
            highlight=False).print(table)
