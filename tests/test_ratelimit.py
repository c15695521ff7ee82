from hypothesis import given
from hypothesis import strategies as st

from webterm.ratelimit import TokenBucketLimiter


def test_burst_then_refusal_with_retry_after() -> None:
    limiter = TokenBucketLimiter(rate=2.0, burst=3)
    assert [limiter.take("a", 0.0).allowed for _ in range(3)] == [True, True, True]
    verdict = limiter.take("a", 0.0)
    assert not verdict.allowed
    assert verdict.retry_after == 0.5
    assert verdict.retry_after_header == "1"
    assert limiter.take("a", 0.5).allowed  # one token refilled


def test_keys_are_independent() -> None:
    limiter = TokenBucketLimiter(rate=1.0, burst=1)
    assert limiter.take("a", 0.0).allowed
    assert not limiter.take("a", 0.0).allowed
    assert limiter.take("b", 0.0).allowed


def test_key_flood_is_bounded_and_prune_forgets_full_buckets() -> None:
    limiter = TokenBucketLimiter(rate=1.0, burst=2, max_keys=100)
    for i in range(1000):
        limiter.take(f"k{i}", 0.0)
    assert len(limiter) == 100
    limiter.prune(now=10.0)
    assert len(limiter) == 0


@given(
    rate=st.floats(0.1, 100),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 5), min_size=1, max_size=200),
)
def test_never_allows_more_than_burst_plus_refill(
    rate: float, burst: int, gaps: list[float]
) -> None:
    limiter = TokenBucketLimiter(rate=rate, burst=burst)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += limiter.take("k", now).allowed
    assert allowed <= burst + rate * now + 1e-6
