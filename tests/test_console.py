"""The live training display: speed, ETA, resumed seeds."""

import math

from rich.console import Console

from dqnrun.console import LiveTraining, TrainingDisplay, fmt_eta
from dqnrun.trainer import EpisodeEnd, SeedEnd


def episode(seed, number, steps, wall, episodes=10):
    return EpisodeEnd(seed, number, episodes, steps, 9.0, 9.0, 1, 9.0, 0.5, wall_time=wall)


def test_speed_and_eta_by_hand():
    display = TrainingDisplay("t", seeds=[1, 2, 3], episodes=10, jobs=2)
    assert math.isnan(display.eta())  # nothing known yet
    display.handle(episode(1, 1, 100, 2.0))
    row = display.rows[1]
    assert row.steps_per_s == 50.0  # over the whole seed until a second episode arrives
    display.handle(episode(1, 2, 400, 4.0))
    assert row.steps_per_s == 150.0  # (400 - 100) steps in (4 - 2) s
    # Seed 1: 2 s per episode, 8 episodes left = 16 s; seeds 2 and 3 not started: 10 episodes
    # each at seed 1's pace = 20 s each. 56 s of work on 2 workers = 28 s.
    assert display.eta() == 28.0
    display.handle(episode(2, 1, 50, 1.0))
    # seed 2 at 1 s/episode: 9 s left; seed 3 at the mean pace 1.5 s: 15 s; seed 1: 16 s.
    assert display.eta() == (16 + 9 + 15) / 2
    display.handle(SeedEnd(1, "complete"))
    display.handle(SeedEnd(3, "complete"))
    assert display.eta() == 9.0  # only seed 2 is left: its own time, whatever the workers
    out = Console(width=200, record=True)
    out.print(display.render())
    text = out.export_text()
    assert "t  ETA 9.0s" in text and "steps/s" in text
    assert fmt_eta(3725) == "1h02m" and fmt_eta(75) == "1m15s"


def test_eta_stops_at_max_steps_when_that_comes_first():
    display = TrainingDisplay("t", seeds=[1], episodes=100_000, max_steps=1_000)
    display.handle(episode(1, 2, 200, 4.0, episodes=100_000))
    # 2 s per episode would leave 199,996 s; 800 steps left at 0.02 s per step is 16 s.
    assert display.eta() == 16.0


def test_resumed_seeds_say_where_they_continue():
    out = Console(width=200, record=True, force_terminal=False)
    display = TrainingDisplay("t", seeds=[3, 4], episodes=300, resumed_from={3: 25})
    assert display.rows[3].episode == 25 and display.rows[3].status == "resumes after episode 25"
    with LiveTraining(display, out) as live:
        live.handle(episode(3, 50, 5000, 10.0, episodes=300))
        live.handle(SeedEnd(4, "interrupted", "stopped"))
    text = out.export_text()
    assert "seed 4: interrupted before its first episode" in text
    assert "seed 3: resumes after episode 25" in text
    assert "seed 3: episode 50/300, 5,000 steps" in text and "500 steps/s" in text and "run ETA" in text


def test_sweep_display_line_per_point_smooths_over_the_window_and_counts_finished_seeds():
    from dqnrun.console import PointRow, SweepDisplay
    from dqnrun.trainer import EpisodeEnd, SeedEnd

    display = SweepDisplay("sweep", [PointRow("a", seeds=3, episodes=50, window=4, done=1), PointRow("b", 3, 50, 4)])
    for seed, scores in ((1, [1.0, 2.0, 3.0, 4.0, 5.0]), (2, [10.0, 20.0])):
        for i, score in enumerate(scores, 1):
            display.handle("a", EpisodeEnd(seed, i, 50, 10 * i, score, max(scores[:i]), 1, 0.0, 0.5))
    row = display.rows["a"]
    assert row.current == ((2 + 3 + 4 + 5) / 4 + (10 + 20) / 2) / 2  # each seed's last-window mean, averaged
    assert row.best == row.current and row.done == 1
    display.handle("a", SeedEnd(1, "complete"))
    display.handle("a", SeedEnd(2, "interrupted"))
    assert row.done == 2 and display.rows["b"].done == 0


def test_runs_table_never_cuts_a_name_and_says_what_it_left_out():
    from rich.console import Console

    from dqnrun.console import runs_table

    rows = [
        ("dueling-per", "ddqn+dueling+per+polyak", "CartPole-v1", "5", "250", "2026-11-24 12:54", "334.0", "complete"),
        ("lr0.0007-tau0.1", "dueling", "CartPole-v1", "5", "250", "-", "-",
         "interrupted: episodes done 12: 0, 34: 0 (dqnrun train --resume results/study/lr0.0007-tau0.1)"),
    ]
    for width, hidden in ((80, ["created", "episodes", "seeds", "variant"]), (100, ["created", "episodes"]),
                          (220, [])):
        table, left_out = runs_table("results", rows, width)
        out = Console(width=width, record=True)
        out.print(table)
        text = out.export_text()
        assert left_out == hidden
        assert max(len(line) for line in text.splitlines()) <= width
        assert "…" not in text
        for name in ("dueling-per", "lr0.0007-tau0.1", "CartPole-v1", "334.0",
                     *(() if "variant" in hidden else ("ddqn+dueling+per+polyak",))):
            assert name in text, (width, name)  # whole, on one line
        # The status wraps between words, never inside one: "interrupted:" stays whole.
        assert "interrupted:" in text
        assert "results/study/lr0.0007-tau0.1" in "".join(line.strip() for line in text.splitlines())
    table, _ = runs_table("results", rows, 50)  # too narrow even so: names fold, never end in "…"
    out = Console(width=50, record=True)
    out.print(table)
    assert "…" not in out.export_text()


def test_sweep_line_per_finished_seed_reports_that_seeds_own_numbers_whatever_ran_beside_it():
    import io

    from rich.console import Console

    from dqnrun.console import LiveSweep, PointRow, SweepDisplay
    from dqnrun.smoothing import smooth
    from dqnrun.trainer import EpisodeEnd, SeedEnd

    def lines(order):  # the two seeds' episodes interleaved in the given order
        out = io.StringIO()
        display = SweepDisplay("sweep", [PointRow("a", seeds=2, episodes=5, window=3)])
        runs = {1: [1.0, 2.0, 3.0, 4.0, 8.0], 2: [10.0, 20.0, 30.0, 40.0, 50.0]}
        with LiveSweep(display, Console(file=out, width=200, force_terminal=False)) as live:
            for seed in order:
                episode = len(display.rows["a"].scores.get(seed, [])) + 1
                scores = runs[seed][:episode]
                live.handle("a", EpisodeEnd(seed, episode, 5, 10 * episode, scores[-1], max(scores), 1, 0.0, 0.5))
                if episode == 5:
                    live.handle("a", SeedEnd(seed, "complete"))
        return sorted(line.rsplit(" (", 1)[0] for line in out.getvalue().splitlines())  # less "(k/2 seeds done)"

    first = lines([1] * 5 + [2] * 5)
    assert first == lines([2, 1] * 5) == lines([2] * 5 + [1] * 5)
    seed1 = [line for line in first if "seed 1 " in line][0]
    assert f"smoothed score {smooth([1, 2, 3, 4, 8], 3)[-1]:.1f}" in seed1 and "smoothed score 5.0" in seed1
    assert "best 8.0" in seed1 and "seed 2 complete after 5 episodes, smoothed score 40.0, best 50.0" in first[1]


def test_a_stopped_seed_row_says_where_it_stopped_once():
    """The summary line after the table says "interrupted"; a row does not repeat it, and a seed
    stopped while it waited for a worker says it had not begun."""
    display = TrainingDisplay("t", seeds=[1, 2, 3], episodes=200, resumed_from={3: 25})
    display.handle(episode(1, 28, 345, 1.0, episodes=200))
    for seed in (1, 2, 3):
        display.handle(SeedEnd(seed, "interrupted", f"stopped after episode {display.rows[seed].episode}"))
    assert [r.status for r in display.rows.values()] == [
        "stopped after episode 28", "stopped before episode 1", "stopped after episode 25"]
    display.handle(SeedEnd(1, "diverged", "loss or Q-value not finite at episode 30, step 400"))
    assert display.rows[1].status == "diverged: loss or Q-value not finite at episode 30, step 400"


def test_a_point_evaluated_every_n_steps_reports_its_evaluations_not_its_training_returns():
    import io

    from rich.console import Console

    from dqnrun.console import LiveSweep, PointRow, SweepDisplay
    from dqnrun.trainer import EpisodeEnd, SeedEnd

    out = io.StringIO()
    display = SweepDisplay("sweep", [PointRow("acro", seeds=2, episodes=100, window=2)])
    with LiveSweep(display, Console(file=out, width=200, force_terminal=False)) as live:
        # training returns -500, -400, -300; evaluations at steps 500 and 1,000 inside episodes 1 and 3
        for episode, (ret, evals) in enumerate([(-500.0, ((500, -480.0),)), (-400.0, ()), (-300.0, ((1000, -90.5),))], 1):
            live.handle("acro", EpisodeEnd(1, episode, 100, 400 * episode, ret, -90.5, 3, ret, 0.1, evaluations=evals))
        live.handle("acro", EpisodeEnd(2, 1, 100, 500, -500.0, -200.0, 1, -500.0, 0.1, evaluations=((500, -200.0),)))
        row = display.rows["acro"]
        assert row.current == (-90.5 + -200.0) / 2  # the seeds' last evaluations, not the returns
        live.handle("acro", SeedEnd(1, "complete"))
    assert out.getvalue().strip() == ("acro: seed 1 complete after 3 episodes, last evaluation -90.5 at 1,000 env "
                                      "steps, best -90.5 (1/2 seeds done)")


def test_before_any_evaluation_the_best_is_a_dash_with_no_episode():
    out = Console(width=200, record=True, force_terminal=False)
    display = TrainingDisplay("t", seeds=[1, 2], episodes=50, max_steps=600)
    with LiveTraining(display, out) as live:
        live.handle(EpisodeEnd(1, 50, 50, 600, math.nan, math.nan, 0, -120.0, 0.9, wall_time=1.0))
        live.handle(SeedEnd(1, "complete"))
        live.handle(EpisodeEnd(2, 50, 50, 600, 10.0, 12.5, 40, -120.0, 0.9, wall_time=1.0))
        live.handle(SeedEnd(2, "complete"))
    text = out.export_text()
    assert "seed 1: episode 50/50, 600 steps, score -, best -, " in text
    assert "seed 1: complete after 50 episodes, 600 env steps, best -\n" in text
    assert "seed 2: episode 50/50, 600 steps, score 10.0, best 12.5 (40), " in text
    assert "seed 2: complete after 50 episodes, 600 env steps, best 12.5 at episode 40\n" in text
