"""data_tools.retry: full-jitter backoff, Retry-After (seconds or an HTTP date), the sync and async loops."""

import asyncio
from email.utils import formatdate

import pytest

from data_tools.retry import Retry, RetryPolicy, acall, call, parse_retry_after


def test_full_jitter_stays_within_its_cap_and_varies():
    policy = RetryPolicy(base_s=0.5, max_s=3.0)
    for attempt, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 3.0), (10, 3.0)]:
        waits = [policy.delay(attempt) for _ in range(400)]
        assert all(0.0 <= w <= cap for w in waits)
        assert len(set(waits)) > 300  # drawn, not fixed
        assert max(waits) > 0.8 * cap and min(waits) < 0.2 * cap  # spread over the whole range


def test_retry_after_in_seconds_and_as_an_http_date():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None and parse_retry_after("soon") is None
    now = 1_800_000_000.0
    assert parse_retry_after(formatdate(now + 12, usegmt=True), now=now) == pytest.approx(12.0)
    assert parse_retry_after(formatdate(now - 60, usegmt=True), now=now) == 0.0  # a date already past


def test_the_wait_is_at_least_what_the_server_asked_and_at_most_the_cap():
    policy = RetryPolicy(base_s=0.01, max_s=10.0)
    assert all(policy.delay(0, retry_after=4.0) >= 4.0 for _ in range(50))
    assert policy.delay(0, retry_after=120.0) == 10.0  # capped
    assert policy.wait(1, 4.0) >= 4.0 and policy.wait(2, 4.0) is None  # retries=2: try 2 was the last one


class Flaky:
    """Answers Retry (with a Retry-After) ``fail`` times, raising OSError on odd tries, then "done"."""

    def __init__(self, fail: int):
        self.fail, self.tries = fail, []

    def __call__(self, attempt):
        self.tries.append(attempt)
        if attempt < self.fail:
            if attempt % 2:
                raise OSError("connection reset")
            return Retry(retry_after=1.5, reason="HTTP 429", last=attempt)
        return "done"


def run_async(send, policy):
    waits = []

    async def sleep(s):
        waits.append(s)

    async def asend(attempt):
        return send(attempt)

    return asyncio.run(acall(asend, policy, sleep=sleep)), waits


def run_sync(send, policy):
    waits = []
    return call(send, policy, sleep=waits.append), waits


@pytest.mark.parametrize("driver", [run_sync, run_async], ids=["sync", "async"])
def test_the_loop_retries_outcomes_and_transport_errors_then_gives_up(driver):
    policy = RetryPolicy(retries=3, base_s=0.1, max_s=5.0, retry_on=(OSError,))
    send = Flaky(fail=3)
    result, waits = driver(send, policy)
    assert result == "done" and send.tries == [0, 1, 2, 3]
    assert waits[0] >= 1.5 and waits[2] >= 1.5 and waits[1] <= 0.2  # Retry-After honoured; an error backs off
    # out of tries: the last Retry comes back to the caller ...
    send = Flaky(fail=10)
    result, waits = driver(send, RetryPolicy(retries=2, retry_on=(OSError,)))
    assert isinstance(result, Retry) and result.last == 2 and send.tries == [0, 1, 2] and len(waits) == 2
    # ... the last exception is raised, and exceptions not named in retry_on are never retried
    with pytest.raises(OSError):
        driver(Flaky(fail=10), RetryPolicy(retries=1, retry_on=(OSError,)))
    send = Flaky(fail=10)
    with pytest.raises(OSError):
        driver(send, RetryPolicy(retries=5, base_s=0.0))
    assert send.tries == [0, 1]
