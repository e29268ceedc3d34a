"""``robopref label ...`` through ``robopref.label.cli.main`` in this process; serving is
checked up to the call into uvicorn, which is replaced by a recorder."""

from __future__ import annotations

import pytest
from labelkit import new_store, pairs

from robopref.label import cli


def test_annotator_add_prints_the_token_once_and_it_authenticates(tmp_path, capsys):
    db = str(tmp_path / "labels.db")
    cli.main(["annotator", "add", "alice", "--admin", "--db", db])
    out, err = capsys.readouterr()
    token = out.strip()
    assert "\n" not in token and len(token) >= 40 and "admin alice" in err
    store = new_store(db)
    assert store.authenticate(token).name == "alice"
    store.db.close()
    cli.main(["annotator", "list", "--db", db])
    assert capsys.readouterr().out == "alice (admin)\n"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["annotator", "add", "alice", "--db", db])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: annotator 'alice' exists already")


def test_progress_prints_counts_and_agreement(tmp_path, capsys):
    db = tmp_path / "labels.db"
    store = new_store(db)
    [qid, _] = store.enqueue_pairs(pairs(2), answers_wanted=2)
    a, b = (store.create_annotator(n)[0] for n in ("ann", "ben"))
    store.submit_label(a, qid, "first")
    store.submit_label(b, qid, "first")
    store.db.close()
    cli.main(["progress", "--db", f"sqlite:///{db}"])
    out = capsys.readouterr().out
    assert "queries: 1 open, 1 retired, 0 withdrawn" in out
    assert "labels:  2 (0 cannot tell)" in out
    assert "ann" in out and "1/1 (100%)" in out


@pytest.fixture
def uvicorn_calls(monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    return calls


def test_serve_binds_localhost_by_default_without_a_warning(tmp_path, capsys, uvicorn_calls):
    cli.main(["serve", "--db", str(tmp_path / "labels.db")])
    [(app, kwargs)] = uvicorn_calls
    assert (kwargs["host"], kwargs["port"]) == ("127.0.0.1", 8765)
    assert kwargs["ssl_certfile"] is None
    assert "warning" not in capsys.readouterr().err
    assert app.state.db.url.endswith("labels.db")


def test_serving_on_a_network_address_warns_about_tokens_and_suggests_tls(
    tmp_path, capsys, uvicorn_calls
):
    cli.main(["serve", "--db", str(tmp_path / "l.db"), "--host", "0.0.0.0", "--port", "9000"])
    err = capsys.readouterr().err
    assert "tokens cross the network" in err and "--ssl-certfile" in err
    assert uvicorn_calls[0][1]["host"] == "0.0.0.0"
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cli.main(["serve", "--db", str(tmp_path / "l.db"), "--host", "192.168.1.5",
              "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)])
    err = capsys.readouterr().err
    assert "tokens cross the network" in err and "https://192.168.1.5:8765" in err
    assert uvicorn_calls[1][1]["ssl_keyfile"] == str(key)


def test_half_a_tls_setup_and_bad_arguments_fail_with_one_line(tmp_path, capsys, uvicorn_calls):
    for argv, words in (
        (["serve", "--db", str(tmp_path / "l.db"), "--ssl-certfile", "c.pem"], "both"),
        (["serve", "--port", "eighty"], "invalid int"),
        (["frobnicate"], "invalid choice"),
        (["progress", "--db", "nonsense://"], "not a database"),
    ):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    assert uvicorn_calls == []


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("192.168.1.5", False), ("::", False), ("lab-server", False),
])
def test_is_loopback(host, loopback):
    assert cli.is_loopback(host) is loopback
