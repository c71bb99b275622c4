"""The RSS bench's report (evals/rss_bench.py); the bench itself runs outside the test suite."""

from evals.rss_bench import growth_ratio, rss_mb, table


def test_the_report_puts_both_sides_side_by_side_with_the_ratio_of_their_growth():
    bounded = [(0, 100.0, 0, 0.0, 0), (20, 110.0, 8, 80.0, 20), (40, 110.0, 8, 80.0, 40)]
    unbounded = [(0, 100.0, 0, 0.0, 0), (20, 140.0, 20, 200.0, 20), (40, 180.0, 40, 400.0, 40)]
    assert growth_ratio(bounded, unbounded) == 8.0
    lines = table({"bounded": bounded, "unbounded": unbounded}).splitlines()
    assert lines[2] == "| 0 | 100.0 / 100.0 | 0 / 0 | 0.0 / 0.0 | 0 / 0 |"
    assert lines[4] == "| 40 | 110.0 / 180.0 | 8 / 40 | 80.0 / 400.0 | 40 / 40 |"
    assert lines[-1] == "| RSS growth | 10.0 / 80.0 | | | |"


def test_rss_is_this_process_resident_memory():
    assert rss_mb() > 1
