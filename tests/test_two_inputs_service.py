"""Two-input operators through the service: a side input given as a runtime kwarg in the request,
join results in JSON (``(k, (v, w))`` becomes ``[k, [v, w]]``), bad keys a 422 naming the stage and
item, and the two-input stages drawn in ``GET /pipelines``. Real Flask app, real executors."""

from __future__ import annotations

import pytest

from atoll import Atoll, Pipeline
from atoll.config import load_config


def tenfold(score):
    return score * 10


@pytest.fixture(scope="module")
def client():
    service = Atoll(load_config())
    service.register_pipeline("/with_profiles",
                              Pipeline("with_profiles").mapValues(tenfold).join(side="profiles"))
    service.register_pipeline("/outer", Pipeline("outer").leftOuterJoin(side="profiles"))
    service.register_pipeline("/grouped", Pipeline("grouped").cogroup(side="profiles"))
    service.register_pipeline("/both", Pipeline("both").fork(
        Pipeline().keyBy(len), Pipeline().keyBy(len).mapValues(str.upper)).join(), n_jobs=2)
    return service.create_app().test_client()


def run(client, name, data, **kwargs):
    return client.post(f"/pipelines/{name}", json={"data": data, "kwargs": kwargs})


def test_a_side_input_joins_as_a_json_object_or_list_of_pairs(client):
    data = [["u1", 1], ["u2", 2], ["u1", 3]]
    for profiles in ({"u1": {"name": "Ann"}}, [["u1", {"name": "Ann"}]]):
        answer = run(client, "with_profiles", data, profiles=profiles)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert answer.get_json()["results"] == [["u1", [10, {"name": "Ann"}]], ["u1", [30, {"name": "Ann"}]]]


def test_left_outer_join_gives_null_and_cogroup_gives_two_lists(client):
    answer = run(client, "outer", [["a", 1], ["b", 2]], profiles={"a": "A"})
    assert answer.get_json()["results"] == [["a", [1, "A"]], ["b", [2, None]]]
    answer = run(client, "grouped", [["a", 1], ["a", 2], [None, 0]], profiles=[["c", 3], [None, 9]])
    assert answer.get_json()["results"] == [["a", [[1, 2], []]], [None, [[0], [9]]], ["c", [[], [3]]]]


def test_a_fork_of_two_keyed_branches_joins_on_local_workers(client):
    answer = run(client, "both", ["ab", "c", "de"])
    assert answer.status_code == 200
    assert answer.get_json()["results"] == [[2, ["ab", "AB"]], [2, ["ab", "DE"]], [1, ["c", "C"]],
                                            [2, ["de", "AB"]], [2, ["de", "DE"]]]


def test_an_unhashable_key_is_a_422_naming_the_stage_and_item(client):
    answer = run(client, "outer", [[["a"], 1]], profiles={})
    assert answer.status_code == 422, answer.get_data(as_text=True)
    error = answer.get_json()["error"]
    assert "leftOuterJoin needs hashable keys" in error["message"]
    assert error["stage"]["operator"] == "leftOuterJoin" and error["stage"]["index"] == 0
    answer = run(client, "with_profiles", [["u1", 1]], profiles=[["u1", "x", "extra"]])
    assert answer.status_code == 422
    assert "pairs or a dict as its right input" in answer.get_json()["error"]["message"]


def test_a_missing_side_input_is_refused_before_running(client):
    answer = client.post("/pipelines/with_profiles", json={"data": [["u1", 1]]})
    assert answer.status_code in (400, 422), answer.get_data(as_text=True)
    assert "profiles" in answer.get_json()["error"]["message"]


def test_two_input_stages_are_drawn_with_their_side_input(client):
    listed = {p["name"]: p for p in client.get("/pipelines").get_json()["pipelines"]}
    join = listed["with_profiles"]["graph"][1]
    assert join["operator"] == "join" and join["kwargs"] == ["profiles"]
    assert join["function"] == "input + side profiles"
    assert listed["with_profiles"]["kwargs"] == ["profiles"]
    both = listed["both"]["graph"]
    assert [s["operator"] for s in both] == ["fork", "join"] and both[1]["function"] == "2 inputs"
    assert both[0]["branches"][0][0]["operator"] == "keyBy"


def test_the_openapi_stage_schema_names_every_operator(client):
    from atoll.operators import OPERATORS

    schema = client.get("/openapi.json").get_json()["components"]["schemas"]["GraphStage"]
    operators = schema["properties"]["operator"]["enum"]
    assert set(operators) == set(OPERATORS)
    for name in ("keyBy", "mapPartitions", "sample", "zipWithIndex", "union", "join", "leftOuterJoin",
                 "cogroup"):
        assert name in operators
    assert "side input" in schema["description"]
