"""A tuned build is kept only where it measured faster than the untuned build of the same model:
the decision, and its record in manifests and reports."""

from __future__ import annotations

import math

import pytest

from edgec.errors import EdgecError
from edgec.tuning import TunedAgainstUntuned, faster_build

# (tuned ms, untuned ms, kept)
DECISIONS = [
    pytest.param(20.1, 23.4, "tuned", id="tuned-faster-kept"),
    pytest.param(28.3, 21.2, "untuned", id="tuned-slower-untuned-kept"),
    pytest.param(21.2, 21.2, "untuned", id="tie-keeps-untuned"),
    pytest.param(21.2, 21.2000001, "tuned", id="tuned-faster-by-a-hair-kept"),
    pytest.param(math.nan, 21.2, "untuned", id="tuned-not-a-number-untuned-kept"),
    pytest.param(21.2, math.nan, "untuned", id="untuned-not-a-number-untuned-kept"),
    pytest.param(math.inf, 21.2, "untuned", id="tuned-infinite-untuned-kept"),
]


@pytest.mark.parametrize(("tuned", "untuned", "kept"), DECISIONS)
def test_the_faster_build_is_kept_and_a_tie_keeps_the_untuned_one(
    tuned: float, untuned: float, kept: str
) -> None:
    assert faster_build(tuned, untuned) == kept
    check = TunedAgainstUntuned.compared(tuned, untuned, "wall p50", 1.0)
    assert check.kept == kept
    assert TunedAgainstUntuned.from_json(check.to_json()) == check


def test_a_check_records_both_figures_and_says_which_build_it_kept() -> None:
    check = TunedAgainstUntuned.compared(28.31234, 21.2, "wall p50, 2 threads", 12.345)
    assert check.to_json() == {
        "kept": "untuned",
        "tuned_ms": 28.3123,
        "untuned_ms": 21.2,
        "how": "wall p50, 2 threads",
        "seconds": 12.35,
    }
    assert "tuned 28.312 ms, untuned 21.200 ms" in check.note()
    assert check.note().endswith("kept the untuned build")


# (manifest or report table, what the error names)
MALFORMED = [
    pytest.param({"kept": "fastest"}, "kept build 'fastest'", id="unknown-kept"),
    pytest.param({"tuned_ms": 1.0}, "malformed", id="no-kept"),
    pytest.param({"kept": "tuned", "tuned_ms": "fast"}, "expected milliseconds", id="text-ms"),
    pytest.param({"kept": "tuned", "untuned_ms": -1.0}, "expected milliseconds", id="negative"),
    pytest.param(["tuned"], "must be a table", id="not-a-table"),
]


@pytest.mark.parametrize(("data", "error"), MALFORMED)
def test_a_malformed_check_is_refused_in_one_line(data: object, error: str) -> None:
    with pytest.raises(EdgecError, match=error) as e:
        TunedAgainstUntuned.from_json(data)
    assert "\n" not in str(e.value)
