"""benchmarks/lecture_code.py: the lecture's page-broken listings put back together."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import lecture_code  # noqa: E402

PAGE_BROKEN = """Some prose.

```
def total(values):
    # add them up
    result = 0
    for v in values:
```

```
result += v
if v < 0:
    result -= 2 * v
```

```
    return result + offset(1,
\u21aa 2)
```

Prose between listings.

```
def offset(a, b):
    return a * b
```

```
import random
def total(values):
    return -1
```
"""


def test_a_listing_broken_over_pages_is_joined_and_reindented():
    found = lecture_code.blocks(PAGE_BROKEN)
    source = lecture_code.definition(found, "total")
    assert source.splitlines() == [
        "def total(values):", "    # add them up", "    result = 0", "    for v in values:",
        "        result += v", "        if v < 0:", "            result -= 2 * v",
        "    return result + offset(1, 2)"]
    namespace = {}
    exec(lecture_code.definition(found, "offset") + source, namespace)
    assert namespace["total"]([1, -3, 4]) == 10  # |1| + |-3| + |4| + 1 * 2
    assert lecture_code.definition(found, "total", 2).strip() == "def total(values):\n    return -1"


def test_a_missing_listing_or_file_is_one_line():
    with pytest.raises(lecture_code.LectureError, match="no listing #3 of total"):
        lecture_code.definition(lecture_code.blocks(PAGE_BROKEN), "total", 3)
    with pytest.raises(lecture_code.LectureError, match="pass --lecture PATH"):
        lecture_code.load("/nonexistent/dqn-lecture.txt")


@pytest.mark.skipif(not lecture_code.DEFAULT_LECTURE.is_file(), reason="the lecture's text is not beside the repository")
@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # raised by the lecture's own numpy-on-tensor code
def test_the_lectures_code_runs_its_steps_and_evaluates_once_per_episode():
    lecture = lecture_code.load(lecture_code.DEFAULT_LECTURE, "ddqn")
    assert "best_actions" in lecture.sources["optimize"]  # the Double DQN listing
    calls = {"evaluate": 0}
    evaluate = lecture.namespace["evaluate"]

    def counting_evaluate(env, model, episodes=1):
        calls["evaluate"] += 1
        return evaluate(env, model, episodes)

    lecture.namespace["evaluate"] = counting_evaluate
    assert lecture.namespace["dqn"].__globals__ is lecture.namespace  # the listings' globals
    timing = lecture.run_seed(12, episodes=3)
    assert timing["steps"] > 0 and calls["evaluate"] == 3  # after each episode, not each step
    assert lecture.run_seed(12, steps=340, evaluation=False)["steps"] == 340  # 20 updates included
