"""The lecture's own DQN code, loaded from the lecture's text at run time (for the benchmarks only).

The lecture (`shared/lecture/dqn-lecture.txt`, next to the repository) is course material and
the benchmarks' trusted input: its Python listings are executed as they are, into a namespace
of their own; none of its code is kept in this repository. The text is a PDF turned into text,
so a listing that crosses a page arrives in pieces, and the loader puts them back:

- fenced blocks (```) are the listings; a line starting with an arrow (the PDF's wrap mark) is
  joined to the line before it;
- a function whose listing continues in the next block(s) is joined with them: while the code
  does not compile, or while the next block follows with no prose in between and continues
  the function (it starts indented, or at column 0 with a statement that is not a new `def`,
  `class` or import);
- a continuation block extracted at column 0 gets the indentation of the open block it
  continues (the line before it ends in `:`: one level deeper). Two page breaks also lost a
  dedent, which the text cannot show; they are restored from the listing's own comments and
  the lecture's description of the algorithm (`DEDENTS`): `dqn` evaluates after each episode,
  not after each step ("After each episode, evaluate the policy"), and `experiment` averages
  over the seeds after its loop over seeds. An AST check confirms both placements;
- `dqn`'s last progress message has two format specifiers the extraction garbled
  (`{:.05.1f}`, `{:.03}`: Python rejects both, so the loop would stop after its first
  episode); the lecture's printed output ("best score 500.0 at episode 016") shows they are
  `{:05.1f}` and `{:03}` (`REPAIRS`).

Everything else runs as printed: the uniform replay with `np.random.choice(..., replace=False)`,
one state at a time for acting and evaluation, `torch.optim.RMSprop`, the log-space epsilon
table, the global random seeds. `device` is the CPU (the lecture picks MPS where there is one).
"""

from __future__ import annotations

import ast
import contextlib
import os
import random
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LECTURE = REPO.parent / "shared" / "lecture" / "dqn-lecture.txt"

WRAP_MARKS = ("\u21aa", "\u21b3")  # the PDF's "continued from the line above" arrows
#: Which listing of each function the lecture's DDQN and DQN experiments use (1 = the first
#: listing that defines it). The later listings are PER's (create_type, store_experience,
#: sample_experiences, optimize #3) and the dueling section's (create_network #2, update_target #2).
FIRST = {name: 1 for name in (
    "create_type", "create_replay_memory", "store_experience", "sample_experiences", "create_network",
    "create_optimizer", "update_target", "pi", "evaluate", "save_model", "load_model", "create_epsilons",
    "epsilon_greedy", "dqn", "experiment")}
VARIANTS = {
    # optimize #1 is the DQN target (max of the target network), #2 the Double DQN one; the
    # learning rates are the ones the lecture runs them with (dqn_results: experiment's
    # default 0.0007; ddqn_results: learning_rate = 0.001).
    "dqn": ({**FIRST, "optimize": 1}, 0.0007),
    "ddqn": ({**FIRST, "optimize": 2}, 0.001),
}
#: Dedents lost at page breaks: (function, comment line) -> indentation of that line and the
#: lines after it in the same block.
DEDENTS = {
    ("dqn", "# After each episode, evaluate the policy"): 8,
    ("experiment", "# calculate max, min and average scores among experiments"): 4,
}
REPAIRS = {"dqn": [("{:.05.1f}", "{:05.1f}"), ("{:.03}", "{:03}")]}


class LectureError(Exception):
    """The lecture's text is missing or is not the one this loader knows (one line)."""


@dataclass
class Block:
    lines: list[str]
    after_prose: bool  # prose stood between this block and the one before


def blocks(text: str) -> list[Block]:
    """The fenced code blocks of the text, with wrapped lines joined."""
    found: list[Block] = []
    current: list[str] | None = None
    prose = True
    for line in text.splitlines():
        if line.strip().startswith("```"):
            if current is None:
                current = []
            else:
                found.append(Block(current, prose))
                current, prose = None, False
            continue
        if current is None:
            prose = prose or bool(line.strip())
            continue
        stripped = line.strip()
        if stripped[:1] in WRAP_MARKS and current:
            current[-1] = current[-1].rstrip() + " " + stripped[1:].strip()
        else:
            current.append(line.rstrip())
    return found


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _code_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.strip() and not line.strip().startswith("#")]


def _compiles(source: str) -> bool:
    try:
        compile(source, "<lecture>", "exec")
    except SyntaxError:
        return False
    return True


def _continues(code: list[str], block: Block) -> bool:
    """Whether `block` carries on the function in `code` (see the module docstring)."""
    if not _compiles("\n".join(code)):
        return True
    if block.after_prose:
        return False
    first = next((line for line in block.lines if line.strip()), None)
    if first is None:
        return False
    if _indent(first) > 0:
        return True
    starts_new = re.match(r"(def|class|import|from)\b", first) is not None
    return not starts_new and _indent(_code_lines(code)[-1]) > 0


def _reindent(name: str, code: list[str], block: Block) -> list[str]:
    """A continuation block at column 0 moved to the open block's indentation."""
    first = next(line for line in block.lines if line.strip())
    if _indent(first) > 0:
        return block.lines
    last = _code_lines(code)[-1]
    base = _indent(last) + (4 if last.rstrip().endswith(":") else 0)
    out = []
    for line in block.lines:
        base = DEDENTS.get((name, line.strip()), base)
        out.append(" " * base + line if line.strip() else "")
    return out


def _up_to_next_definition(lines: list[str], block: Block) -> list[str]:
    """The lines of a continuation block before a new top-level `def` or `class` in it."""
    for n, line in enumerate(block.lines):
        if re.match(r"(def|class) ", line):
            return lines[:n]
    return lines


def definition(found: list[Block], name: str, occurrence: int = 1) -> str:
    """The source of the `occurrence`-th listing that defines `name`, put back together."""
    seen = 0
    for i, block in enumerate(found):
        for j, line in enumerate(block.lines):
            if not re.match(rf"(def|class) {name}\b", line):
                continue
            seen += 1
            if seen < occurrence:
                continue
            code = [block.lines[j]]
            for rest in block.lines[j + 1:]:  # up to the next top-level statement of the block
                if rest.strip() and _indent(rest) == 0 and not rest.startswith(("#", ")", "]", "}")):
                    break
                code.append(rest)
            k = i + 1
            while k < len(found) and _continues(code, found[k]):
                code += _up_to_next_definition(_reindent(name, code, found[k]), found[k])
                k += 1
            while code and (code[-1].startswith("#") or not code[-1].strip()):  # a comment of what follows
                code.pop()
            source = "\n".join(code) + "\n"
            for old, new in REPAIRS.get(name, []):
                source = source.replace(old, new)
            if not _compiles(source):
                raise LectureError(f"the lecture's listing of {name}() does not compile after reassembly")
            return source
    raise LectureError(f"the lecture has no listing #{occurrence} of {name}()")


def _check_structure(sources: dict[str, str]) -> None:
    """The two page breaks whose dedent was restored: confirm where the calls ended up."""
    def calls_inside(source: str, loop: type, callee: str) -> bool:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, loop):
                for inner in ast.walk(node):
                    if (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name)
                            and inner.func.id == callee):
                        return True
        return False

    if not calls_inside(sources["dqn"], ast.For, "evaluate") or calls_inside(sources["dqn"], ast.While, "evaluate"):
        raise LectureError("the lecture's dqn() does not evaluate once per episode after reassembly")
    dump = next((n for n in ast.walk(ast.parse(sources["experiment"])) if isinstance(n, ast.Attribute)
                 and n.attr == "dump"), None)
    if dump is None or calls_inside(sources["experiment"], ast.For, "dqn") is False:
        raise LectureError("the lecture's experiment() is not the one this loader knows")
    for node in ast.walk(ast.parse(sources["experiment"])):
        if isinstance(node, ast.For) and any(isinstance(n, ast.Attribute) and n.attr == "dump" for n in ast.walk(node)):
            raise LectureError("the lecture's experiment() saves inside its loop over seeds after reassembly")


class Enough(Exception):
    """Raised from inside the lecture's loop to end it after N env steps."""


@dataclass
class Lecture:
    """The lecture's functions for one variant, in their own namespace."""

    variant: str
    learning_rate: float
    namespace: dict[str, Any]
    sources: dict[str, str] = field(repr=False)

    def run_seed(self, seed: int, *, episodes: int | None = None, steps: int | None = None,
                 evaluation: bool = True, workdir: str | None = None) -> dict[str, float]:
        """Run the lecture's `experiment` for one seed; return its wall time and env steps.

        `experiment` does the lecture's own seeding, networks, optimizer, replay and epsilon
        table, then calls `dqn`. With `steps`, the loop is stopped after that many training env
        steps: `epsilon_greedy` (called once at the start of every training step with the step
        count) is wrapped to raise `Enough` at step `steps`, so the last step's update and target
        sync are included and no other step is. With `evaluation` off, `evaluate` returns 0.0
        without playing (the best model is then saved once, after the first episode). Its
        progress prints go to os.devnull. The model and result files go to a temporary directory.
        """
        ns = self.namespace
        original = dict(ns)
        counted = {"steps": 0}
        greedy = ns["epsilon_greedy"]

        def counting(epsilons, model, state, action_size, step):
            if steps is not None and step >= steps:
                raise Enough
            counted["steps"] = step + 1
            return greedy(epsilons, model, state, action_size, step)

        ns["epsilon_greedy"] = counting
        if not evaluation:
            ns["evaluate"] = lambda env, model, episodes=1: 0.0
        import gymnasium

        env = gymnasium.make("CartPole-v1", render_mode="rgb_array")  # as the lecture makes it
        with tempfile.TemporaryDirectory(dir=workdir) as tmp, open(os.devnull, "w") as null:
            start = time.perf_counter()
            scores = None
            try:
                with contextlib.redirect_stdout(null):
                    result = ns["experiment"](
                        env=env, result_filename=os.path.join(tmp, "results.joblib"),
                        model_file_name=os.path.join(tmp, "model.pth"), learning_rate=self.learning_rate,
                        seeds=(seed,), max_episodes=episodes if episodes is not None else 10**9)
                scores = result["mean_score"]
            except Enough:
                pass
            finally:
                seconds = time.perf_counter() - start
                ns.clear()
                ns.update(original)
                env.close()
        out = {"seconds": seconds, "steps": counted["steps"]}
        if scores is not None and len(scores):
            out["final_smoothed_score"] = float(scores[-1])
        return out


def load(path: str | os.PathLike[str] = DEFAULT_LECTURE, variant: str = "ddqn") -> Lecture:
    """Read the lecture's text and exec the functions of `variant` (dqn | ddqn) into a namespace."""
    import joblib
    import numpy as np
    import torch

    path = Path(path)
    if not path.is_file():
        raise LectureError(f"the lecture's text is not at {path}: pass --lecture PATH to dqn-lecture.txt")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LectureError(f"cannot read the lecture's text {path}: {error}") from None
    occurrences, learning_rate = VARIANTS[variant]
    found = blocks(text)
    sources = {name: definition(found, name, k) for name, k in occurrences.items()}
    _check_structure(sources)
    namespace: dict[str, Any] = {"__name__": "dqn_lecture", "torch": torch, "np": np, "random": random,
                                 "joblib": joblib, "device": torch.device("cpu")}
    for name, source in sources.items():
        exec(compile(source, f"{path}:{name}", "exec"), namespace)  # trusted course material, see above
    return Lecture(variant, learning_rate, namespace, sources)


if __name__ == "__main__":  # print the reassembled listings, to read them against the lecture
    import sys

    lecture = load(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_LECTURE)
    for name, source in lecture.sources.items():
        print(f"# --- {name}\n{source}")
