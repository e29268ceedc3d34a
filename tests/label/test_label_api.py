"""The HTTP API through FastAPI's TestClient on a SQLite file: every status code, one-line
error bodies, idempotent submits, and concurrent annotators over HTTP."""

from __future__ import annotations

import io
import math
import shutil
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from labelkit import label_rows, pairs

from robopref.data import Segment
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


# -- undo ------------------------------------------------------------------------------
def test_undo_removes_the_callers_newest_label_and_reopens_its_query(tmp_path):
    db = open_database(tmp_path / "labels.db")
    store = LabelStore(db)
    ids = store.enqueue_pairs(pairs(3), answers_wanted=1)
    tokens = {name: store.create_annotator(name)[1] for name in ("alice", "bob")}
    with TestClient(create_app(db)) as client:
        alice, bob = auth(tokens["alice"]), auth(tokens["bob"])
        assert_one_line_error(client.post("/api/undo", headers=alice), 404, "nothing to undo")
        client.post(f"/api/queries/{ids[0]}/label", headers=alice, json=ANSWER)
        client.post(f"/api/queries/{ids[1]}/label", headers=alice,
                    json={"choice": "equal", "reason": "both slip", "time_taken_s": 3})
        client.post(f"/api/queries/{ids[2]}/label", headers=bob, json=ANSWER)  # newer, bob's
        assert store.get_query(ids[1]).status == "retired"
        response = client.post("/api/undo", headers=alice)
        assert response.status_code == 200, response.text
        undone = response.json()
        assert (undone["query_id"], undone["choice"], undone["reason"]) == (
            ids[1], "equal", "both slip")
        assert undone["query"]["key"] == "q1" and undone["query"]["status"] == "open"
        assert store.get_query(ids[1]).status == "open"
        # Alice is served the reopened query again and can answer it anew.
        assert client.get("/api/next", headers=alice).json()["id"] == ids[1]
        relabel = client.post(f"/api/queries/{ids[1]}/label", headers=alice,
                              json={**ANSWER, "choice": "second"})
        assert relabel.status_code == 201
        assert label_rows(store) == [("q0", "alice", "first", None),
                                     ("q1", "alice", "second", None),
                                     ("q2", "bob", "first", None)]
        # Undo walks back one label per call, only ever the caller's own.
        assert client.post("/api/undo", headers=alice).json()["query_id"] == ids[1]
        assert client.post("/api/undo", headers=alice).json()["query_id"] == ids[0]
        assert_one_line_error(client.post("/api/undo", headers=alice), 404, "nothing to undo")
        assert label_rows(store) == [("q2", "bob", "first", None)]
        assert_one_line_error(client.post("/api/undo"), 401, "token")
    db.close()


def test_undo_is_scoped_to_a_project_and_refuses_withdrawn_queries(tmp_path):
    db = open_database(tmp_path / "labels.db")
    store = LabelStore(db)
    ids = store.enqueue_pairs(pairs(2), answers_wanted=2, project="p")
    other = store.enqueue_pairs(pairs(1, prefix="o"), answers_wanted=1, project="other")
    alice = store.create_annotator("alice")[0]
    bob, bob_token = store.create_annotator("bob")
    store.submit_label(alice, ids[0], "first", time_taken_s=1)
    store.submit_label(alice, other[0], "second", time_taken_s=1)
    # Within project p, alice's newest label is on q0, not the newer one elsewhere.
    assert store.undo_last(alice, project="p").query_id == ids[0]
    assert label_rows(store) == [("o0", "alice", "second", None)]
    # Two answers retire a k = 2 query; undoing one of them reopens it.
    store.submit_label(alice, ids[0], "first", time_taken_s=1)
    store.submit_label(bob, ids[0], "equal", time_taken_s=1)
    assert store.get_query(ids[0]).status == "retired"
    assert store.undo_last(bob).choice == "equal"
    assert store.get_query(ids[0]).status == "open"
    # A label on a withdrawn query stays: the loop may have read it.
    store.submit_label(bob, ids[1], "second", time_taken_s=1)
    store.withdraw(ids[1])
    with TestClient(create_app(db)) as client:
        assert_one_line_error(client.post("/api/undo", headers=auth(bob_token)), 409,
                              "withdrawn")
    assert ("q1", "bob", "second", None) in label_rows(store)
    db.close()


# -- videos and traces -------------------------------------------------------------------
def tiny_webm(path: Path, frames: int = 10, size: int = 64, fps: int = 10) -> Path:
    """Encode a real VP9 WebM (``frames`` frames of ``size`` px at ``fps``), so a browser
    truly decodes and plays what the fake cache serves. A square slides across."""
    import av
    import numpy as np

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size, size, 3), (38, 44, 52), np.uint8)
            x = (size // 2) * i // max(1, frames - 1)  # a square slides to the right
            image[size // 3: size // 3 + size // 4, x: x + size // 4] = (230, 170, 90)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    path.write_bytes(buffer.getvalue())
    return path


class FakeVideos:
    """The video cache interface of ``robopref.label.video`` without datasets: a request
    "renders" (copies one tiny WebM) after ``delay_s`` seconds in a timer thread; segments
    of episodes listed in ``broken`` fail. Records every request, to check prefetching."""

    def __init__(self, folder: Path, delay_s: float = 0.3, broken: tuple[str, ...] = ()):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.source = tiny_webm(folder / "source.webm")
        self.delay_s, self.broken = delay_s, broken
        self.requests: list[tuple[Segment, str | None]] = []
        self.ready: dict[Segment, threading.Event] = {}
        self.errors: dict[Segment, str] = {}
        self.lock = threading.Lock()
        self.timers: list[threading.Timer] = []

    def _file(self, segment: Segment) -> Path:
        name = f"{segment.episode_id.replace(':', '_')}_{segment.start}_{segment.end}.webm"
        return self.folder / name

    def _render(self, segment: Segment) -> None:
        if segment.episode_id in self.broken:
            self.errors[segment] = f"episode {segment.episode_id} has no camera\nframes"
        else:
            shutil.copyfile(self.source, self._file(segment))
        self.ready[segment].set()

    def request(self, items):
        with self.lock:
            for segment, dataset_path in items:
                self.requests.append((segment, dataset_path))
                if segment not in self.ready:
                    self.ready[segment] = threading.Event()
                    timer = threading.Timer(self.delay_s, self._render, (segment,))
                    timer.daemon = True
                    timer.start()
                    self.timers.append(timer)

    def path(self, segment):
        event = self.ready.get(segment)
        done = event is not None and event.is_set() and segment not in self.errors
        return self._file(segment) if done else None

    def wait(self, segment, dataset_path, timeout_s):
        self.request([(segment, dataset_path)])
        self.ready[segment].wait(timeout_s)
        return self.path(segment)

    def failed(self, segment):
        return self.errors.get(segment)

    def close(self):
        for timer in self.timers:
            timer.cancel()


def fake_trace(segment: Segment, dataset_path: str | None) -> dict | None:
    """Even episodes carry a wrench sensor (1 s of a 100 Hz sine, N and N·m); odd ones
    none; episode 98 is a dataset that cannot be read."""
    index = int(segment.episode_id.rpartition(":")[2])
    if index == 98:
        raise FileNotFoundError(f"no dataset at {dataset_path}\n(moved?)")
    if index % 2:
        return None
    t = [i / 100 for i in range(len(segment) * 10)]
    force = [[math.sin(6 * x), math.cos(6 * x), 5 + x] for x in t]
    return {"t": t, "force": force, "torque": [[0.1 * a, 0.1 * b, 0.0] for a, b, _ in force]}


@pytest.fixture
def video_env(tmp_path):
    db = open_database(tmp_path / "labels.db")
    store = LabelStore(db)
    queries = pairs(6)
    ids = store.enqueue_pairs(queries, dataset_paths={"ds": "/data/ds"})
    [score_id] = store.enqueue_episode_scores([("s0", Segment("ds:98", 0, 10))])
    _, token = store.create_annotator("alice")
    videos = FakeVideos(tmp_path / "videos", delay_s=0.3, broken=("ds:3",))
    with TestClient(create_app(db, videos=videos, traces=fake_trace)) as client:
        yield client, store, ids + [score_id], auth(token), videos
    videos.close()
    db.close()


def test_next_prefetches_the_videos_of_the_next_queries(video_env):
    client, store, ids, headers, videos = video_env
    assert client.get("/api/next", headers=headers).json()["id"] == ids[0]
    requested = [segment.episode_id for segment, _ in videos.requests]
    # The served pair first, then the three the caller gets next, both sides each.
    assert requested == ["ds:0", "ds:1", "ds:2", "ds:3", "ds:4", "ds:5", "ds:6", "ds:7"]
    assert {path for _, path in videos.requests} == {"/data/ds"}
    time.sleep(0.6)  # the renders finish
    response = client.get(f"/api/queries/{ids[1]}/video/first", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/webm"
    assert response.content == videos.source.read_bytes()


def test_a_video_still_rendering_is_202_with_retry_after(video_env, monkeypatch):
    client, _, ids, headers, videos = video_env
    monkeypatch.setattr("robopref.label.server.VIDEO_WAIT_S", 0.01)
    videos.delay_s = 2.0
    response = client.get(f"/api/queries/{ids[4]}/video/second", headers=headers)
    assert response.status_code == 202 and response.headers["retry-after"] == "1"
    assert {s.episode_id for s, _ in videos.requests} == {"ds:9"}


def test_a_video_that_cannot_render_is_a_one_line_422(video_env):
    client, _, ids, headers, _ = video_env
    response = client.get(f"/api/queries/{ids[1]}/video/second", headers=headers)  # ds:3
    assert_one_line_error(response, 422, "ds:3", "no camera frames")


def test_video_and_trace_requests_need_a_token_and_a_real_side(video_env):
    client, _, ids, headers, videos = video_env
    for kind in ("video", "trace"):
        assert_one_line_error(client.get(f"/api/queries/{ids[0]}/{kind}/first"), 401, "token")
        assert_one_line_error(client.get(f"/api/queries/{ids[0]}/{kind}/third",
                                         headers=headers), 422, "side")
        assert_one_line_error(client.get(f"/api/queries/999/{kind}/first", headers=headers),
                              404, "999")
        # An episode-score query has one segment only.
        assert_one_line_error(client.get(f"/api/queries/{ids[-1]}/{kind}/second",
                                         headers=headers), 404, "first")
    assert videos.requests == []


def test_traces_are_json_or_204_or_a_one_line_error(video_env):
    client, _, ids, headers, _ = video_env
    response = client.get(f"/api/queries/{ids[0]}/trace/first", headers=headers)  # ds:0
    assert response.status_code == 200
    trace = response.json()
    assert len(trace["t"]) == len(trace["force"]) == len(trace["torque"]) == 100
    assert trace["units"] == {"t": "s", "force": "N", "torque": "N·m"}
    assert trace["force"][0] == [0.0, 1.0, 5.0]
    response = client.get(f"/api/queries/{ids[0]}/trace/second", headers=headers)  # ds:1
    assert response.status_code == 204 and response.content == b""
    response = client.get(f"/api/queries/{ids[-1]}/trace/first", headers=headers)  # ds:98
    assert_one_line_error(response, 422, "ds:98", "no dataset")


def test_long_traces_are_thinned_for_the_page(tmp_path):
    db = open_database(tmp_path / "labels.db")
    store = LabelStore(db)
    [qid] = store.enqueue_pairs(pairs(1))
    _, token = store.create_annotator("alice")
    n = 10_000  # 10 s at 1 kHz

    def traces(segment, dataset_path):
        force = [[1.0, 2.0, 3.0]] * n
        force[0] = [math.nan, 2.0, math.inf]  # a dropped sample: null in JSON
        return {"t": [i / 1000 for i in range(n)], "force": force, "torque": None}

    with TestClient(create_app(db, traces=traces)) as client:
        trace = client.get(f"/api/queries/{qid}/trace/first", headers=auth(token)).json()
        assert 1000 <= len(trace["t"]) <= 1500 and "torque" not in trace
        assert len(trace["force"]) == len(trace["t"]) and trace["t"][0] == 0.0
        assert trace["force"][:2] == [[None, 2.0, None], [1.0, 2.0, 3.0]]
        # Without a video cache the video endpoint says so in one line.
        assert_one_line_error(client.get(f"/api/queries/{qid}/video/first",
                                         headers=auth(token)), 404, "video cache")
    db.close()


def test_the_page_and_its_static_files_are_served_without_a_token(env):
    client = env[0]
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "no-referrer"
    assert '<script src="/static/app.js"' in response.text
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert "innerHTML" not in client.get("/static/app.js").text
    assert_one_line_error(client.get("/static/nothing.js"), 404)
