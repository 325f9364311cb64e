"""The aggregate, set, group and order operators through the service (their JSON form and graph) and
their misuse at definition time. Their results on every executor are in the conformance table
(tests/conformance/cases.py) and the property tests (tests/test_properties.py)."""

from __future__ import annotations

import json
from operator import add

import pytest

from atoll import Atoll, LocalExecutor, Pipeline, PipelineError
from atoll.config import load_config
from atoll.encoding import Counts, jsonable, to_json


@pytest.fixture(scope="module")
def client():
    service = Atoll(load_config())
    service.register_pipeline("/counts", Pipeline(name="counts").countByValue())
    service.register_pipeline("/words", Pipeline(name="words").flatMap(str.split).countByValue(),
                              executor=LocalExecutor(2, min_parallel_seconds=0, probe_seconds=0, max_chunk=1))
    service.register_pipeline("/keys", Pipeline(name="keys").countByKey())
    service.register_pipeline("/both", Pipeline(name="both").fork(Pipeline().countByValue(),
                                                                  Pipeline().count()))
    service.register_pipeline("/top", Pipeline(name="top").map(len).top(2))
    service.register_pipeline("/stats", Pipeline(name="stats").stats())
    return service.create_app().test_client()


def results(client, name, data):
    response = client.post(f"/pipelines/{name}", json={"data": data})
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data(as_text=True))["results"]


def test_counts_are_lists_of_pairs_over_http_keeping_the_keys_types(client):
    got = results(client, "counts", [1, None, 1, "1", 2.5, "1"])
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, [[1, 2], [None, 1], ["1", 2], [2.5, 1]]))


def test_an_unhashable_element_is_a_422_naming_stage_and_item(client):
    response = client.post("/pipelines/counts", json={"data": [1, [2, 3]]})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["stage"]["operator"] == "countByValue" and error["item"] == [2, 3]
    assert "countByValue needs hashable elements; got list [2, 3]" in error["message"]


def test_counts_on_the_local_executor_and_by_key_and_inside_a_fork(client):
    assert dict(map(tuple, results(client, "words", ["a b a", "b a c"]))) == {"a": 3, "b": 2, "c": 1}
    assert dict(map(tuple, results(client, "keys", [["a", 1], [None, 2], ["a", 3]]))) == {"a": 2, None: 1}
    assert results(client, "counts", []) == []
    assert results(client, "both", ["x", "y", "x"]) == [[["x", 2], ["y", 1]], 3]


def test_other_results_over_http(client):
    assert results(client, "top", ["a", "ccc", "bb"]) == [3, 2]
    assert results(client, "stats", [1, 3]) == {"count": 2, "mean": 2.0, "stdev": 1.0, "min": 1, "max": 3}


def test_counts_are_a_dict_in_python_and_pairs_for_the_jobs_path():
    counts = Pipeline().countByValue()([(1, 2), (1, 2), None])
    assert isinstance(counts, dict) and counts == {(1, 2): 2, None: 1}
    assert jsonable(counts) == [[[1, 2], 2], [None, 1]]  # what a job stores as its results
    assert to_json([counts]) == "[[[[1,2],2],[null,1]]]"
    assert to_json({"plain": {"a": 1}}) == '{"plain":{"a":1}}'  # other dicts stay objects
    assert isinstance(Counts({1: 1}), dict)


def test_the_graph_draws_the_new_operators(client):
    listed = client.get("/pipelines").get_json()
    graphs = {p["name"]: p["graph"] for p in (listed["pipelines"] if "pipelines" in listed else listed)}
    assert graphs["counts"] == [{"operator": "countByValue", "function": "", "bound": [], "kwargs": [],
                                 "branches": []}]
    assert [s["operator"] for s in graphs["top"]] == ["map", "top"] and graphs["top"][1]["function"] == "2"
    assert graphs["both"][0]["branches"][0][0]["operator"] == "countByValue"


def test_descriptions_show_the_parameters():
    p = (Pipeline().sortBy(len, ascending=False).top(3, key=abs).takeOrdered(2).take(5).first()
         .foldByKey(0, add).groupByKey().distinct().count())
    assert p.describe() == ["sortBy(key=len, ascending=False)", "top(3, key=abs)", "takeOrdered(2)",
                            "take(5)", "first()", "foldByKey(0, add)", "groupByKey()", "distinct()",
                            "count()"]
    assert Pipeline().top(3).sig != Pipeline().top(4).sig


@pytest.mark.parametrize("build, message", [
    (lambda: Pipeline().top(-1), "stage 0 top: n must be a whole number >= 0, got -1"),
    (lambda: Pipeline().map(abs).take("3"), "stage 1 take: n must be a whole number >= 0, got '3'"),
    (lambda: Pipeline().sortBy("name"), "stage 0 sortBy: key must be callable or None, got str"),
    (lambda: Pipeline().foldByKey(0, None), "stage 0 foldByKey: needs functions, got NoneType"),
])
def test_misuse_at_definition_names_the_stage(build, message):
    with pytest.raises(PipelineError, match=message.replace("(", r"\(")):
        build()
