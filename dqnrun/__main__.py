"""`python -m dqnrun ...` runs the `dqnrun` command (useful where the console script is not on PATH)."""

from dqnrun.cli import app

if __name__ == "__main__":
    app(prog_name="dqnrun")
