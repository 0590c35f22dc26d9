"""Image-level rates: the arithmetic, undefined rates, and the Wilson interval."""

from __future__ import annotations

import pytest

from defectspectrum.qc.rates import Counts, percent, rate, wilson_interval


def test_counts_and_rates() -> None:
    counts = Counts()
    outcomes = [counts.add(t, p) for t, p in [(True, True)] * 3 + [(True, False)] + [(False, True)] * 2
                + [(False, False)] * 6]
    assert outcomes.count("TP") == 3 and outcomes.count("FN") == 1 and outcomes.count("FP") == 2
    assert (counts.tp, counts.fn, counts.fp, counts.tn) == (3, 1, 2, 6)
    assert counts.recall == 75.0 and counts.escape_rate == 25.0
    assert counts.fpr == 25.0
    assert counts.precision == 60.0
    assert counts.rates_json()["counts"] == {"tp": 3, "fn": 1, "fp": 2, "tn": 6, "defective": 4, "benign": 8}


def test_undefined_rates_are_none_not_zero() -> None:
    only_benign = Counts(tn=5)
    assert only_benign.recall is None and only_benign.escape_rate is None and only_benign.precision is None
    assert only_benign.fpr == 0.0
    only_defective = Counts(tp=2, fn=1)
    assert only_defective.fpr is None and only_defective.recall == pytest.approx(200 / 3)
    nothing_rejected = Counts(fn=3, tn=2)
    assert nothing_rejected.precision is None and nothing_rejected.recall == 0.0
    assert rate(0, 0) is None and percent(None) == "n/a" and percent(12.345) == "12.35"
    assert Counts().rates_json()["recall"] is None


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (0, 10, 0.0, 27.75), (5, 10, 23.66, 76.34), (10, 10, 72.25, 100.0), (1, 50, 0.35, 10.50)])
def test_wilson_interval_matches_published_values(k: int, n: int, low: float, high: float) -> None:
    interval = wilson_interval(k, n, 0.95)
    assert interval is not None
    assert interval[0] == pytest.approx(low, abs=0.01) and interval[1] == pytest.approx(high, abs=0.01)


def test_wilson_interval_edges() -> None:
    assert wilson_interval(0, 0) is None
    wide, narrow = wilson_interval(2, 20, 0.99), wilson_interval(2, 20, 0.8)
    assert wide is not None and narrow is not None and wide[0] < narrow[0] and wide[1] > narrow[1]
    with pytest.raises(ValueError):
        wilson_interval(1, 2, 1.5)
