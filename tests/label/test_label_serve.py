"""A real server process (uvicorn through ``python -m robopref.label.cli serve``), spoken to
over TCP, then SIGKILLed: every label it acknowledged is in the database afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
from labelkit import label_rows, new_store, pairs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_sigkilled_server_loses_no_acknowledged_label(tmp_path):
    db = tmp_path / "labels.db"
    store = new_store(db)
    ids = store.enqueue_pairs(pairs(20), answers_wanted=1)
    _, token = store.create_annotator("alice")
    store.db.close()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "robopref.label.cli", "serve", "--db", str(db), "--port",
         str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    acknowledged = []
    try:
        base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stderr.read().decode()
            assert time.monotonic() < deadline, "server did not come up within 60 s"
            time.sleep(0.2)
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            for qid in ids[:15]:
                response = client.post(f"/api/queries/{qid}/label",
                                       json={"choice": "second", "time_taken_s": 1.0})
                assert response.status_code == 201, response.text
                acknowledged.append(f"q{qid - ids[0]}")
    finally:
        os.kill(server.pid, signal.SIGKILL)  # no shutdown, no checkpoint: only commits count
        server.wait(timeout=30)
        server.stderr.close()
    after = new_store(db)
    assert label_rows(after) == sorted((key, "alice", "second", None) for key in acknowledged)
    after.db.close()
