"""Property tests of ``on_error``: random chains of element-wise stages, some of which raise on some
elements, over random inputs, with and without an aggregate. The serial, local and Spark executors must
give what a plain-Python model gives — the results, the count and the dead letters (stage, element, error)
in the same order — however the input is cut into chunks and partitions."""

from __future__ import annotations

import operator
import sys
from collections import Counter

import cloudpickle
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atoll import LocalExecutor, Pipeline, SerialExecutor

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Bad(Exception):
    """What a fragile stage raises."""


def fragile_map(x):
    if x % 5 == 3:
        raise Bad(f"map refuses {x}")
    return x + 1


def fragile_filter(x):
    if x % 7 == 6:
        raise ValueError(f"filter refuses {x}")
    return x % 3 != 0


def fragile_flat(x):
    if x % 11 == 10:
        raise KeyError(x)
    return [x, x * 2]


def double(x):
    return x * 2


STAGES = {
    "frag_map": ("map", fragile_map),
    "frag_filter": ("filter", fragile_filter),
    "frag_flat": ("flatMap", fragile_flat),
    "double": ("map", double),
}
AGGREGATES = ["none", "sum", "count", "by_key_sum"]


def through(x, chain: list[str], letters: list) -> list:
    """Return what ``x`` becomes through ``chain``, one stage after the other, each failure added to
    ``letters``."""
    each = [x]
    for index, name in enumerate(chain):
        op, f = STAGES[name]
        out = []
        for y in each:
            try:
                z = f(y)
            except Exception as exc:
                letters.append((str(index), y, type(exc).__name__))
                continue
            out += [z] if op == "map" else ([y] if z else []) if op == "filter" else z
        each = out
    return each


def model(data: list, chain: list[str], aggregate: str):
    """Return (results, dead letters as (stage path, element, error name)) computed in plain Python:
    each input element through every stage in turn, so the dead letters are in input order, then in
    stage order."""
    letters: list = []
    items = [y for x in data for y in through(x, chain, letters)]
    if aggregate == "sum":
        return sum(items), letters
    if aggregate == "count":
        return len(items), letters
    if aggregate == "by_key_sum":
        acc: dict = {}
        for x in items:
            acc[x % 4] = acc.get(x % 4, 0) + x
        return acc, letters
    return items, letters


def build(chain: list[str], aggregate: str) -> Pipeline:
    p = Pipeline()
    for name in chain:
        op, f = STAGES[name]
        p = getattr(p, op)(f)
    if aggregate == "sum":
        return p.sum()
    if aggregate == "count":
        return p.count()
    if aggregate == "by_key_sum":
        return p.map(lambda x: (x % 4, x)).reduceByKey(operator.add)
    return p


def check(data, chain, aggregate, executor):
    expected, letters = model(data, chain, aggregate)
    outcome = build(chain, aggregate).run(data, executor=executor, on_error="collect")
    results = dict(outcome.results) if aggregate == "by_key_sum" else outcome.results
    assert results == expected
    assert [(e.stage.to_dict()["path"], e.element, e.error) for e in outcome.errors] == letters
    assert outcome.skipped == len(letters)
    skipped = build(chain, aggregate).run(data, executor=executor, on_error="skip")
    assert (dict(skipped.results) if aggregate == "by_key_sum" else skipped.results) == expected
    assert skipped.skipped == len(letters) and skipped.errors == []


datas = st.lists(st.integers(-30, 60), max_size=50)
chains = st.lists(st.sampled_from(sorted(STAGES)), min_size=1, max_size=4)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datas, chain=chains, aggregate=st.sampled_from(AGGREGATES))
def test_serial_agrees_with_the_model(data, chain, aggregate):
    check(data, chain, aggregate, SerialExecutor())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datas, chain=chains, aggregate=st.sampled_from(AGGREGATES), max_chunk=st.integers(1, 12),
       alongside=st.booleans())
def test_local_agrees_with_the_model_whatever_the_chunks(data, chain, aggregate, max_chunk, alongside):
    """``alongside``: this process shares the pass with one worker; otherwise every chunk goes to two."""
    if alongside:
        executor = LocalExecutor(2, probe_seconds=0, max_chunk=max_chunk)
    else:
        executor = LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0, max_chunk=max_chunk)
    check(data, chain, aggregate, executor)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=datas, chain=chains, aggregate=st.sampled_from(AGGREGATES))
def test_spark_agrees_with_the_model(spark_local_executor, data, chain, aggregate):
    check(data, chain, aggregate, spark_local_executor)


def fails_at_positions(x):
    if x % 997 == 13 or x in (0, 4095, 4096, 9999):
        raise Bad(f"bad {x}")
    return x


@pytest.mark.parametrize("executor", [SerialExecutor(),
                                      LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0)],
                         ids=["serial", "local"])
def test_a_long_input_salvages_only_its_failing_slices_in_order(executor):
    """10,000 elements, failures at the edges of the 4096 and 64 element slices a failed pass is run
    again in, and scattered: the same results, in order, as the model, for plain, folded (an
    associative but not commutative fold), keyed and ordered passes."""
    data = list(range(10_000))
    good = [x for x in data if not (x % 997 == 13 or x in (0, 4095, 4096, 9999))]
    bad = [x for x in data if x not in set(good)]
    base = Pipeline().map(fails_at_positions)
    cases = [
        (base, good),
        (base.map(str).reduce(lambda a, b: a + "," + b), ",".join(map(str, good))),
        (base.map(lambda x: (x % 10, 1)).reduceByKey(operator.add), None),
        (base.sortBy(lambda x: -x), sorted(good, reverse=True)),
        (base.take(3), good[:3]),
    ]
    for pipeline, expected in cases:
        outcome = pipeline.run(data, executor=executor, on_error="collect")
        if expected is None:
            assert dict(outcome.results) == dict(Counter(x % 10 for x in good))
        else:
            assert outcome.results == expected
        assert [e.element for e in outcome.errors] == bad and outcome.skipped == len(bad)
