"""The DSL itself: immutability, names and signatures, repr, runtime kwargs, composition errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from operator import add

import pytest

from atoll import MissingKwargsError, Pipeline, PipelineError
from atoll.pipeline import RESERVED_KWARGS


def tokenize(text, delimiter=" "):
    return text.split(delimiter)


def pair(word):
    return (word, 1)


def test_operators_return_new_pipelines():
    base = Pipeline("base").map(tokenize)
    extended = base.flatMap(None).filter(bool).reduce(add)
    assert len(base) == 1 and len(extended) == 4
    assert base.describe() == ["map(tokenize)"]
    for op in ("map", "flatMap", "filter", "mapValues", "flatMapValues", "reduce", "reduceByKey", "to"):
        assert getattr(base, op)(add) is not base
    for op in ("fork", "forkMap", "split", "splitMap"):
        assert getattr(base, op)(None, len) is not base
    assert len(base) == 1 and base.name == "base"


def test_stages_are_frozen():
    p = Pipeline().map(tokenize)
    with pytest.raises(AttributeError):
        p.stages[0].func = len
    assert isinstance(p.stages, tuple)


def test_branching_from_a_shared_prefix_does_not_leak():
    common = Pipeline().map(str.lower)
    a = common.map(len)
    b = common.map(str.upper)
    assert common(["Ab"]) == ["ab"] and a(["Ab"]) == [2] and b(["Ab"]) == ["AB"]


def test_name_and_sig():
    p = Pipeline().flatMap(tokenize).map(pair).reduceByKey(add)
    assert len(p.sig) == 32 and int(p.sig, 16) >= 0
    assert p.name == p.sig  # no name: the sig stands in
    named = p.with_name("wordcount")
    assert named.name == "wordcount" and named.sig == p.sig
    assert Pipeline("wordcount").flatMap(tokenize).map(pair).reduceByKey(add).sig == p.sig


def test_sig_tells_pipelines_apart():
    base = Pipeline().map(tokenize)
    variants = [
        base, base.map(pair), Pipeline().flatMap(tokenize), base.map(tokenize, delimiter=","),
        Pipeline().map(tokenize, ","), Pipeline().map(tokenize, kwargs=["delimiter"]),
        Pipeline().map(lambda x: len(x)), Pipeline().map(lambda x: sum(x)),
        Pipeline().fork(len, sum), Pipeline().forkMap(len, sum), Pipeline().fork(sum, len),
        Pipeline().to(Pipeline().map(len)), Pipeline().to(Pipeline().map(sum)),
    ]
    sigs = [v.sig for v in variants]
    assert len(set(sigs)) == len(sigs)


def test_sig_is_the_same_for_equal_pipelines():
    def build():
        return Pipeline().map(lambda x: x + 1).fork(None, Pipeline().map(pair)).to(tokenize)

    assert build().sig == build().sig


SIG_SCRIPT = """
from operator import add
from atoll import Pipeline

def words(text):
    return [w for w in text.split() if w not in {"a", "an", "the", "of"}]

p = (Pipeline().flatMap(words).map(lambda w: (w, 1)).reduceByKey(add)
     .fork(None, Pipeline().map(lambda k, v: {k: [v for _ in range(v)]})))
print(p.sig)
"""


def test_sig_is_stable_across_processes(tmp_path):
    """Constants such as sets (hash order) and nested code (memory addresses) must not leak in."""
    script = tmp_path / "sig.py"
    script.write_text(SIG_SCRIPT)
    sigs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": os.getcwd()}
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                              timeout=120, check=True)
        sigs.add(done.stdout.strip())
    assert len(sigs) == 1 and len(sigs.pop()) == 32


def test_repr_shows_stages():
    p = Pipeline("wc").flatMap(tokenize, delimiter=",").map(pair).reduceByKey(add, kwargs=["x"])
    assert repr(p) == ("Pipeline(name='wc') flatMap(tokenize, delimiter=',') -> map(pair) -> "
                       "reduceByKey(add, x=<runtime>)")
    assert repr(Pipeline()) == "Pipeline()"
    forked = Pipeline().fork(None, len, Pipeline("inner").map(pair))
    assert repr(forked) == "Pipeline() fork(identity|len|inner)"
    assert "to('inner')" in repr(Pipeline().to(Pipeline("inner")))


def test_expected_kwargs_include_nested():
    inner = Pipeline().map(tokenize, kwargs=["delimiter"])
    p = Pipeline().map(pair, kwargs="weight").fork(inner, None).to(Pipeline().to(inner))
    assert p.expected_kwargs == ("weight", "delimiter")


def test_missing_kwarg_names_the_stage_and_what_it_takes():
    p = Pipeline("tok").map(str.strip).map(tokenize, kwargs=["delimiter"])
    with pytest.raises(PipelineError) as caught:
        p(["a b"])
    message = str(caught.value)
    assert "missing runtime kwargs ['delimiter']" in message
    assert "map(tokenize, delimiter=<runtime>)" in message and "'tok'" in message


def test_missing_kwarg_is_a_key_error_as_in_the_original_atoll():
    p = Pipeline("tok").map(tokenize, kwargs=["delimiter"])
    try:
        p(["a b"])
    except KeyError as err:  # how code written for the original atoll catches it
        assert isinstance(err, PipelineError) and isinstance(err, MissingKwargsError)
        # KeyError.__str__ would quote the message: it reads as written, also in the HTTP error body
        assert str(err).startswith("pipeline 'tok': missing runtime kwargs ['delimiter']")
        assert err.message == str(err)
    else:
        pytest.fail("a missing runtime kwarg did not raise")
    with pytest.raises(PipelineError) as unknown:
        p(["a b"], delimiter=" ", colour="red")
    assert not isinstance(unknown.value, KeyError)  # an extra kwarg is no failed lookup


def test_unknown_kwarg():
    with pytest.raises(PipelineError, match=r"unknown runtime kwargs \['colour'\].*takes: none"):
        Pipeline().map(len)(["a"], colour="red")


def test_missing_kwarg_checked_before_any_work():
    calls = []
    p = Pipeline().map(calls.append).map(tokenize, kwargs=["delimiter"])
    with pytest.raises(PipelineError):
        p(["a b"])
    assert calls == []


@pytest.mark.parametrize("name", sorted(RESERVED_KWARGS))
def test_reserved_runtime_kwarg_names(name):
    with pytest.raises(PipelineError, match="reserved"):
        Pipeline().map(tokenize, kwargs=[name])


@pytest.mark.parametrize("op", ["map", "flatMap", "filter", "mapValues", "flatMapValues", "reduce",
                                "reduceByKey", "to"])
def test_non_callable_stage(op):
    with pytest.raises(PipelineError, match=rf"stage 1 {op}\(.*must be callable"):
        getattr(Pipeline().map(len), op)(42)


@pytest.mark.parametrize("op", ["reduce", "reduceByKey"])
def test_aggregate_needs_a_function(op):
    with pytest.raises(PipelineError, match="needs a function of two arguments"):
        getattr(Pipeline(), op)(None)


@pytest.mark.parametrize("op", ["fork", "forkMap", "split", "splitMap"])
def test_branching_errors(op):
    with pytest.raises(PipelineError, match="at least one branch"):
        getattr(Pipeline(), op)()
    with pytest.raises(PipelineError, match="branch 1 must be a function, a Pipeline or None"):
        getattr(Pipeline(), op)(len, "nope")


def test_nested_pipeline_takes_no_bound_arguments():
    with pytest.raises(PipelineError, match="nested pipeline takes no bound arguments"):
        Pipeline().map(Pipeline().map(len), 3)


def test_name_must_be_a_string():
    with pytest.raises(PipelineError, match="name must be a string"):
        Pipeline(name=3)


def test_call_chooses_executor():
    p = Pipeline().map(abs)
    assert p([-1], serial=True) == [1]
    assert p([-1], n_jobs=2) == [1]
    with pytest.raises(PipelineError, match="contradict"):
        p([-1], serial=True, distributed=True)
    with pytest.raises(PipelineError, match="either executor"):
        from atoll import SerialExecutor

        p([-1], executor=SerialExecutor(), n_jobs=2)
    with pytest.raises(PipelineError, match="must be an atoll Executor"):
        p([-1], executor="serial")


def test_branches_are_normalised_to_pipelines():
    p = Pipeline().fork(None, len).forkMap(len).splitMap(Pipeline().to(len))
    fork, fork_map, split_map = p.stages
    assert [b.describe() for b in fork.branches] == [[], ["to(len)"]]
    assert [b.describe() for b in fork_map.branches] == [["map(len)"]]
    assert [b.describe() for b in split_map.branches] == [["to(len)"]]


def test_graph_nests_the_branches_and_lists_bound_and_runtime_kwargs():
    inner = Pipeline(name="inner").map(lambda x, k: x + k, kwargs=["k"])
    p = (Pipeline().map(divmod, 3).fork(None, len, inner).splitMap(str, Pipeline().map(inner))
         .reduce(max, initial=0))
    graph = p.graph()
    assert [s["operator"] for s in graph] == ["map", "fork", "splitMap", "reduce"]
    assert graph[0] == {"operator": "map", "function": "divmod", "bound": ["3"], "kwargs": [],
                        "branches": []}
    identity, length, nested = graph[1]["branches"]
    assert identity == []
    assert length == [{"operator": "to", "function": "len", "bound": [], "kwargs": [], "branches": []}]
    assert nested[0]["operator"] == "map" and nested[0]["kwargs"] == ["k"]
    # a pipeline given as a stage's function is one stage that needs the nested pipeline's kwargs
    mapped = graph[2]["branches"][1]
    assert mapped == [{"operator": "map", "function": "'inner'", "bound": [], "kwargs": ["k"],
                       "branches": []}]
    assert graph[3]["bound"] == ["initial=0"]
    assert json.loads(json.dumps(graph)) == graph  # plain JSON, as GET /pipelines sends it
