"""The HTTP RPC circuit breaker (rpc.md §3.7; AnyCable-Go's gobreaker settings) on a fake
clock: the time is an argument of every call."""

from __future__ import annotations

from cableway.rpc.breaker import BreakerState, CircuitBreaker


def run(breaker: CircuitBreaker, now: float, *, success: bool) -> BreakerState | None:
    ticket = breaker.allow(now)
    assert ticket is not None
    return breaker.done(ticket, success=success, now=now)


def test_ten_requests_with_80_percent_failures_open_it() -> None:
    breaker = CircuitBreaker(now=0.0)
    for _ in range(2):
        assert run(breaker, 1.0, success=True) is None
    for _ in range(7):
        assert run(breaker, 1.0, success=False) is None  # 7 of 9: fewer than 10 requests
    assert run(breaker, 1.0, success=False) is BreakerState.OPEN  # 8 of 10
    assert breaker.allow(1.0) is None
    assert breaker.opened == 1


def test_failures_below_80_percent_keep_it_closed() -> None:
    breaker = CircuitBreaker(now=0.0)
    for _ in range(3):
        run(breaker, 1.0, success=True)
    for _ in range(11):
        assert run(breaker, 1.0, success=False) is None  # 11 of 14 = 78 %
    assert breaker.state(1.0) is BreakerState.CLOSED


def test_counts_start_again_every_10_seconds_while_closed() -> None:
    breaker = CircuitBreaker(now=0.0)
    for _ in range(9):
        run(breaker, 9.9, success=False)
    # a new window: the nine earlier failures no longer count
    for _ in range(9):
        assert run(breaker, 10.0, success=False) is None
    assert breaker.state(10.0) is BreakerState.CLOSED
    assert run(breaker, 19.9, success=False) is BreakerState.OPEN


def test_a_result_from_an_earlier_window_is_ignored() -> None:
    breaker = CircuitBreaker(now=0.0)
    late = breaker.allow(9.0)
    assert late is not None
    for _ in range(9):
        run(breaker, 10.0, success=False)
    assert breaker.done(late, success=False, now=10.5) is None  # started in the old window
    assert breaker.state(10.5) is BreakerState.CLOSED


def opened(now: float = 0.0) -> CircuitBreaker:
    breaker = CircuitBreaker(now=now)
    for _ in range(10):
        run(breaker, now, success=False)
    assert breaker.state(now) is BreakerState.OPEN
    return breaker


def test_open_for_5_seconds_then_half_open_lets_5_trial_requests_through() -> None:
    breaker = opened()
    assert breaker.allow(4.99) is None
    assert breaker.state(5.0) is BreakerState.HALF_OPEN
    tickets = [breaker.allow(5.0) for _ in range(5)]
    assert all(t is not None for t in tickets)
    assert breaker.allow(5.0) is None  # a sixth waits for the trials
    results = [breaker.done(t, success=True, now=5.1) for t in tickets if t is not None]
    assert results == [None, None, None, None, BreakerState.CLOSED]
    assert breaker.allow(5.1) is not None


def test_a_failure_while_half_open_opens_it_again_for_5_seconds() -> None:
    breaker = opened()
    assert run(breaker, 5.0, success=True) is None
    assert run(breaker, 6.0, success=False) is BreakerState.OPEN
    assert breaker.opened == 2
    assert breaker.allow(10.99) is None
    assert breaker.state(11.0) is BreakerState.HALF_OPEN


def test_it_closes_with_a_fresh_window() -> None:
    breaker = opened()
    for _ in range(5):
        run(breaker, 5.0, success=True)
    assert breaker.state(5.0) is BreakerState.CLOSED
    for _ in range(9):
        assert run(breaker, 6.0, success=False) is None  # the old failures are gone
    assert breaker.state(6.0) is BreakerState.CLOSED
