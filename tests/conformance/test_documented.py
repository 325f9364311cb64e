"""The examples of the original atoll documentation (docs/pipelines.rst), run as documented on every
executor. Where the original text has a slip, the test says so and runs what it evidently meant."""

from __future__ import annotations

import sys
from operator import add

import cloudpickle

from atoll import Pipeline

# executors whose workers cannot import this test module (a Spark cluster) get its functions by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

DATA = [
    "Coral reefs are diverse underwater ecosystems",
    "Coral reefs are built by colonies of tiny animals",
]


def count_length(input):
    return len(input)


def tokenize(input, delimiter=" "):
    return input.split(delimiter)


def lowercase(input):
    return input.lower()


def count_coral(input):
    return input.count("coral")


def double(x):
    return x * 2


def triple(x):
    return x * 3


def identity(x):
    return x


def standardize(input, transform_func=identity):
    return transform_func(input)


pipeline = Pipeline().map(tokenize).map(count_length)
common = Pipeline().map(lowercase).map(tokenize)
task_a = Pipeline().map(count_length)
# The original text defines ``task_b = Pipeline().flatMap(count_vowels)`` but never defines
# count_vowels, and shows ``[1, 1]``: the count of 'coral' per sentence, i.e. map(count_coral).
task_b = Pipeline().map(count_coral)
branching_pipeline = common.fork(task_a, task_b)


def test_word_counts(executor):
    assert pipeline.run(DATA, executor=executor) == [6, 9]


def test_nested_pipeline(executor):
    nested_pipeline = Pipeline().map(lowercase).to(pipeline)
    assert nested_pipeline.run(DATA, executor=executor) == [6, 9]


def test_fork_returns_one_result_per_branch(executor):
    results_a, results_b = branching_pipeline.run(DATA, executor=executor)
    assert (results_a, results_b) == ([6, 9], [1, 1])


def test_reduce_of_branches(executor):
    reduced_pipeline = branching_pipeline.reduce(add)
    assert reduced_pipeline.run(DATA, executor=executor) == [6, 9, 1, 1]


def test_identity_branch(executor):
    result_a, result_b, result_c = common.fork(task_a, task_b, None).run(DATA, executor=executor)
    assert result_a == [6, 9]
    assert result_b == [1, 1]
    assert result_c == [
        ["coral", "reefs", "are", "diverse", "underwater", "ecosystems"],
        ["coral", "reefs", "are", "built", "by", "colonies", "of", "tiny", "animals"],
    ]


def test_forkMap_then_split(executor):
    documented = Pipeline().forkMap(double, triple).split(len, sum)
    # documented as ``[4, 30]``; atoll returns a branching stage's results as a tuple
    assert documented.run([1, 2, 3, 4], executor=executor) == (4, 30)


def test_runtime_keyword_arguments(executor):
    standardizing = Pipeline().map(standardize, kwargs=["transform_func"]).reduce(add)
    assert standardizing.run([1, 2, 3, 4], executor=executor, transform_func=identity) == 10
    assert standardizing.run(["1", "2", "3", "4"], executor=executor, transform_func=int) == 10


def test_named_pipeline():
    tokenizer = Pipeline(name="Tokenizer").map(lowercase).map(tokenize)
    assert tokenizer.name == "Tokenizer"
    assert tokenizer(DATA)[0][0] == "coral"


def test_call_with_n_jobs_as_documented():
    assert branching_pipeline(DATA, n_jobs=2) == ([6, 9], [1, 1])
    assert pipeline(DATA) == [6, 9]
