"""``sample(fraction, seed)`` on every executor: the same sample for the same seed (and input) on one
executor, a subsequence of the input in its order, about ``fraction`` of it; serial and local agree
with each other (one seeded stream over the whole input); Spark samples per partition (its own)."""

from __future__ import annotations

import pytest

from atoll import Pipeline, PipelineError
from atoll.executors import LocalExecutor, SerialExecutor


def is_subsequence(part: list, whole: list) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


def test_the_same_seed_gives_the_same_sample_in_input_order(executor):
    p = Pipeline().map(lambda x: x * 2).sample(0.3, seed=11)
    data = list(range(2000))
    first, second = p.run(data, executor=executor), p.run(data, executor=executor)
    assert first == second
    assert is_subsequence(first, [x * 2 for x in data])
    assert 400 < len(first) < 800  # 0.3 of 2000 is 600; this misses with probability < 1e-9
    other = Pipeline().map(lambda x: x * 2).sample(0.3, seed=12).run(data, executor=executor)
    assert other != first


def test_serial_and_local_draw_the_same_sample_whatever_the_chunks():
    p = Pipeline().filter(lambda x: x % 3).sample(0.5, seed=5)
    data = list(range(500))
    serial = p.run(data, executor=SerialExecutor())
    forced = LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0, max_chunk=7)
    assert p.run(data, executor=forced) == serial
    assert p.run((x for x in data), executor=LocalExecutor(2, probe_seconds=0, max_chunk=50)) == serial


@pytest.mark.parametrize("fraction, seed, message", [
    (1.5, 1, "fraction must be a number from 0 to 1"), (-0.1, 1, "fraction"), ("half", 1, "fraction"),
    (0.5, 1.5, "seed must be an int or None"), (0.5, True, "seed")])
def test_bad_sample_arguments_are_refused_at_composition(fraction, seed, message):
    with pytest.raises(PipelineError, match=message) as caught:
        Pipeline().map(abs).sample(fraction, seed)
    assert "stage 1 sample" in str(caught.value)
