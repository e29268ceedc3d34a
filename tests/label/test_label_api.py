"""The HTTP API through FastAPI's TestClient on a SQLite file: every status code, one-line
error bodies, idempotent submits, and concurrent annotators over HTTP."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient
from labelkit import label_rows, pairs

from robopref.label import LabelStore, open_database
from robopref.label.server import create_app


@pytest.fixture
def env(tmp_path):
    """An app on a fresh database with three pair queries (2 answers each), an admin and two
    annotators; yields (client, store, ids, tokens by name)."""
    db = open_database(tmp_path / "labels.db")
    store = LabelStore(db)
    ids = store.enqueue_pairs(pairs(3), answers_wanted=2)
    tokens = {name: store.create_annotator(name, admin=name == "admin")[1]
              for name in ("admin", "alice", "bob")}
    with TestClient(create_app(db)) as client:
        yield client, store, ids, tokens
    db.close()


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_one_line_error(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    detail = body["detail"]
    assert detail and "\n" not in detail and len(detail) < 300
    for word in words:
        assert word in detail, detail
    return detail


ANSWER = {"choice": "first", "time_taken_s": 2.5}


def test_a_label_round_trip(env):
    client, store, ids, tokens = env
    response = client.get("/api/next", headers=auth(tokens["alice"]))
    assert response.status_code == 200
    query = response.json()
    assert query["id"] == ids[0] and query["kind"] == "pair" and query["status"] == "open"
    assert query["first"]["episode_id"] == "ds:0" and query["second"]["end"] == 10
    response = client.post(f"/api/queries/{ids[0]}/label", headers=auth(tokens["alice"]),
                           json={**ANSWER, "reason": "gripper closer <b>"})
    assert response.status_code == 201
    label = response.json()
    assert (label["choice"], label["annotator"], label["reason"]) == (
        "first", "alice", "gripper closer <b>")
    mine = client.get(f"/api/queries/{ids[0]}", headers=auth(tokens["alice"])).json()
    assert mine["my_label"] == label and mine["answers"] == 1
    assert client.get("/api/next", headers=auth(tokens["alice"])).json()["id"] == ids[1]
    assert label_rows(store) == [("q0", "alice", "first", None)]


def test_missing_or_wrong_tokens_are_401_with_a_bearer_challenge(env):
    client, _, ids, tokens = env
    for headers in ({}, auth("not-a-token"), {"Authorization": tokens["alice"]},
                    {"Authorization": f"Basic {tokens['alice']}"}, {"Authorization": "Bearer "}):
        for method, url in (("GET", "/api/next"), ("GET", f"/api/queries/{ids[0]}"),
                            ("GET", "/api/progress")):
            response = client.request(method, url, headers=headers)
            assert_one_line_error(response, 401, "token")
            assert response.headers["www-authenticate"] == "Bearer"
        response = client.post(f"/api/queries/{ids[0]}/label", headers=headers, json=ANSWER)
        assert_one_line_error(response, 401, "token")
    assert client.get("/api/health").json()["status"] == "ok"  # needs no token


def test_another_annotators_answer_is_403_unless_the_caller_is_an_admin(env):
    client, _, ids, tokens = env
    client.post(f"/api/queries/{ids[0]}/label", headers=auth(tokens["alice"]), json=ANSWER)
    url = f"/api/queries/{ids[0]}/labels/alice"
    assert client.get(url, headers=auth(tokens["alice"])).json()["choice"] == "first"
    assert client.get(url, headers=auth(tokens["admin"])).json()["annotator"] == "alice"
    assert_one_line_error(client.get(url, headers=auth(tokens["bob"])), 403, "admin")
    assert_one_line_error(client.post(f"/api/queries/{ids[1]}/withdraw",
                                      headers=auth(tokens["bob"])), 403, "admin")


def test_unknown_queries_and_labels_are_404(env):
    client, _, ids, tokens = env
    headers = auth(tokens["alice"])
    assert_one_line_error(client.get("/api/queries/999", headers=headers), 404, "999")
    assert_one_line_error(client.post("/api/queries/999/label", headers=headers, json=ANSWER),
                          404, "999")
    assert_one_line_error(client.get(f"/api/queries/{ids[0]}/labels/alice", headers=headers),
                          404, "alice")
    assert_one_line_error(client.get(f"/api/queries/{ids[0]}/labels/bob",
                                     headers=auth(tokens["admin"])), 404, "bob")
    assert_one_line_error(client.get("/api/nothing-here", headers=headers), 404, "/api/nothing")


def test_a_double_submit_is_idempotent_and_leaves_one_row(env):
    client, store, ids, tokens = env
    url, headers = f"/api/queries/{ids[0]}/label", auth(tokens["alice"])
    first = client.post(url, headers=headers, json=ANSWER)
    second = client.post(url, headers=headers, json=ANSWER)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == first.json()
    assert label_rows(store) == [("q0", "alice", "first", None)]
    # A different answer from the same annotator is refused, the stored one kept.
    changed = client.post(url, headers=headers, json={**ANSWER, "choice": "second"})
    assert_one_line_error(changed, 409, "already answered")
    assert label_rows(store) == [("q0", "alice", "first", None)]


def test_a_label_after_the_query_retired_or_was_withdrawn_is_409(env):
    client, store, ids, tokens = env
    url = f"/api/queries/{ids[0]}/label"
    for name in ("alice", "bob"):  # two answers retire it
        assert client.post(url, headers=auth(tokens[name]), json=ANSWER).status_code == 201
    assert store.get_query(ids[0]).status == "retired"
    assert_one_line_error(client.post(url, headers=auth(tokens["admin"]), json=ANSWER),
                          409, "retired", "/api/next")
    # Bob's retry of the answer that retired it is still a replay, not an error.
    assert client.post(url, headers=auth(tokens["bob"]), json=ANSWER).status_code == 200
    withdrawn = client.post(f"/api/queries/{ids[1]}/withdraw", headers=auth(tokens["admin"]))
    assert withdrawn.json()["status"] == "withdrawn"
    assert_one_line_error(client.post(f"/api/queries/{ids[1]}/label",
                                      headers=auth(tokens["alice"]), json=ANSWER), 409,
                          "withdrawn")
    assert len(label_rows(store)) == 2


@pytest.mark.parametrize("body, where", [
    ({"choice": "left", "time_taken_s": 1}, "choice"),
    ({"choice": "first", "score": 10, "time_taken_s": 1}, "score"),
    ({"choice": "first", "score": -1, "time_taken_s": 1}, "score"),
    ({"choice": "first", "score": "7", "time_taken_s": 1}, "score"),
    ({"choice": "first", "reason": "x" * 2001, "time_taken_s": 1}, "reason"),
    ({"choice": "first", "time_taken_s": -0.5}, "time_taken_s"),
    ({"choice": "first"}, "time_taken_s"),
    ({"choice": "first", "time_taken_s": 1, "choise": "second"}, "choise"),
    ([1, 2], "body"),
    ({"time_taken_s": 1}, "choice"),  # valid JSON, but a pair needs a choice (store rule)
    ({"choice": "first", "score": 4, "time_taken_s": 1}, "score"),  # a pair takes no score
])
def test_a_malformed_body_is_422_with_one_line(env, body, where):
    client, store, ids, tokens = env
    response = client.post(f"/api/queries/{ids[0]}/label", headers=auth(tokens["alice"]),
                           json=body)
    assert_one_line_error(response, 422, where)
    assert label_rows(store) == []


def test_non_json_bodies_and_bad_ids_are_422(env):
    client, _, ids, tokens = env
    headers = {**auth(tokens["alice"]), "Content-Type": "application/json"}
    assert_one_line_error(client.post(f"/api/queries/{ids[0]}/label", headers=headers,
                                      content=b"{not json"), 422, "malformed")
    assert_one_line_error(client.get("/api/queries/abc", headers=headers), 422, "query_id")


def test_next_is_204_when_the_caller_has_answered_everything(env):
    client, _, ids, tokens = env
    headers = auth(tokens["alice"])
    for qid in ids:
        client.post(f"/api/queries/{qid}/label", headers=headers, json=ANSWER)
    response = client.get("/api/next", headers=headers)
    assert response.status_code == 204 and response.content == b""
    assert client.get("/api/next", headers=auth(tokens["bob"])).json()["id"] == ids[0]


def test_progress_shows_annotators_their_own_count_and_admins_everyones(env):
    client, _, ids, tokens = env
    client.post(f"/api/queries/{ids[0]}/label", headers=auth(tokens["alice"]), json=ANSWER)
    client.post(f"/api/queries/{ids[0]}/label", headers=auth(tokens["bob"]),
                json={"choice": "cannot_tell", "time_taken_s": 4})
    admin = client.get("/api/progress", headers=auth(tokens["admin"])).json()
    assert admin["queries"] == {"open": 2, "retired": 1, "withdrawn": 0}
    assert (admin["labels"], admin["cannot_tell"]) == (2, 1)
    assert admin["by_annotator"] == {"alice": 1, "bob": 1}
    alice = client.get("/api/progress", headers=auth(tokens["alice"])).json()
    assert alice["by_annotator"] == {"alice": 1} and alice["remaining_for_caller"] == 2


def test_concurrent_annotators_over_http_leave_exactly_the_expected_rows(tmp_path):
    """Ten annotators, each in its own thread and client, label every query of a shared
    queue (k = 10, so nobody is turned away): ten rows per query, none lost or doubled."""
    db = open_database(tmp_path / "labels.db")
    store = LabelStore(db)
    n_queries, n_annotators = 8, 10
    ids = store.enqueue_pairs(pairs(n_queries), answers_wanted=n_annotators)
    tokens = [store.create_annotator(f"a{i}")[1] for i in range(n_annotators)]
    app, failures = create_app(db), []
    barrier = threading.Barrier(n_annotators, timeout=60)

    def annotate(i: int, token: str) -> None:
        try:
            with TestClient(app) as client:
                barrier.wait()
                while (response := client.get("/api/next", headers=auth(token))).status_code == 200:
                    qid = response.json()["id"]
                    choice = ("first", "second", "equal", "cannot_tell")[(i + qid) % 4]
                    body = {"choice": choice, "time_taken_s": 0.1}
                    for expected in (201, 200):  # every answer sent twice, as a retry would
                        r = client.post(f"/api/queries/{qid}/label", headers=auth(token),
                                        json=body)
                        if r.status_code != expected:
                            failures.append((i, qid, r.status_code, r.text))
                if response.status_code != 204:
                    failures.append((i, "next", response.status_code, response.text))
        except Exception as exc:  # collected and shown by the assert
            failures.append((i, repr(exc)))

    threads = [threading.Thread(target=annotate, args=(i, t)) for i, t in enumerate(tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    expected = sorted(
        (f"q{qid - ids[0]}", f"a{i}", ("first", "second", "equal", "cannot_tell")[(i + qid) % 4],
         None)
        for qid in ids for i in range(n_annotators)
    )
    assert label_rows(store) == expected
    assert all(store.get_query(q).status == "retired" for q in ids)
    db.close()
