"""serving.admission: refuse at the door what would only wait, counted in solutions at the model's rate."""

import pytest

from serving.admission import Admission


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_refuses_what_would_wait_longer_than_the_budget_at_the_measured_rate():
    clock = Clock()
    adm = Admission(max_wait_s=5.0, clock=clock)
    assert adm.admit(100) is None and adm.admit(100) is None  # no rate yet: everything is admitted
    clock.t = 10.0
    adm.release(100)  # 100 answered in 10 busy seconds: 10 per second; 100 still waiting
    assert adm.rate == pytest.approx(10.0)
    assert adm.admit(40) == pytest.approx(14.0)  # (100 waiting + 40) / 10 per s: refused, says how long
    assert adm.admit(1) == pytest.approx(10.1) and adm.waiting == 100  # refusals are not counted as waiting
    clock.t = 20.0
    adm.release(adm.waiting)
    assert adm.waiting == 0
    assert adm.admit(1000) is None  # nothing waiting: admitted however large


def test_rate_follows_the_recent_busy_time_and_idle_time_does_not_count():
    clock = Clock()
    adm = Admission(max_wait_s=5.0, horizon_s=10.0, clock=clock)
    adm.admit(10)
    clock.t = 1.0
    adm.release(10)  # 10 per second
    clock.t = 500.0  # idle: no effect on the rate
    assert adm.rate == pytest.approx(10.0)
    for _ in range(10):  # the model slows down to 1 per second for 30 busy seconds
        adm.admit(3)
        clock.t += 3.0
        adm.release(3)
    assert 1.0 < adm.rate < 1.5  # the 10-per-second past has faded


def test_failed_calls_free_their_place_without_counting_as_answered():
    clock = Clock()
    adm = Admission(max_wait_s=1.0, clock=clock)
    adm.admit(5)
    clock.t = 2.0
    adm.release(5, answered=False)
    assert adm.waiting == 0 and adm.rate is None
