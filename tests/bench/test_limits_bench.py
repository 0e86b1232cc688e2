"""bench/limits.py's counting: the busiest 1-second window of a list of
starts.  (The benchmark itself needs the root-only multi-host test bed.)"""

from bench.limits import most_in_window


def test_the_busiest_window_is_half_open_and_anchored_anywhere():
    assert most_in_window([]) == 0
    assert most_in_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3   # [0, 1) and [0.5, 1.5)
    assert most_in_window([0.0, 1.0, 2.0, 3.0]) == 1
    assert most_in_window([3.0, 0.2, 0.1, 2.0, 0.3]) == 3    # unsorted input
