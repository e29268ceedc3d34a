"""``robopref label ...``: serve the labelling API, add annotators, show progress.

    robopref label serve [--db URL] [--host 127.0.0.1] [--port 8765]
                         [--videos DIR] [--datasets DIR ...] [--camera NAME]
                         [--ssl-certfile F --ssl-keyfile F]
    robopref label annotator add NAME [--admin] [--db URL]
    robopref label annotator list [--db URL]
    robopref label progress [--db URL] [--project NAME]
    robopref label simulate --token T [--teacher PRESET] [--url URL] [--datasets DIR ...]
    robopref label export --parquet FILE [--project NAME] [--db URL]
    robopref label import FILE [--project NAME] [--db URL]
    robopref label enqueue RUN_OR_DATASET [--pairs N] [--segment-length L] [--answers K]
                           [--query uniform|disagreement|entropy] [--episode-scores N]

``--db`` takes a file path, ``sqlite:///PATH`` or a PostgreSQL URL; it defaults to
``$ROBOPREF_LABEL_DB``, else ``labels.db`` in the working folder.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys

from robopref.errors import ConfigError, RobopError
from robopref.label import cli_tools
from robopref.label import enqueue as enqueue_command

DEFAULT_DB = "labels.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError (one line, exit 2 from the caller) instead of
    printing usage and exiting itself."""

    def error(self, message: str):
        raise ConfigError(f"{message}: see 'robopref label --help'")


def _parser() -> argparse.ArgumentParser:
    default_db = os.environ.get("ROBOPREF_LABEL_DB", DEFAULT_DB)
    parser = _Parser(prog="robopref label", description="the labelling server and database")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--db", default=default_db,
                       help=f"database path or URL (default: $ROBOPREF_LABEL_DB or {DEFAULT_DB})")
        return p

    serve = with_db(commands.add_parser("serve", help="serve the labelling API"))
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help="address to bind (default: localhost only)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--ssl-certfile", help="TLS certificate (PEM), with --ssl-keyfile")
    serve.add_argument("--ssl-keyfile", help="TLS private key (PEM), with --ssl-certfile")
    serve.add_argument("--videos", default=None,
                       help="video cache folder (default: videos/ beside a SQLite database, "
                            "else in the working folder)")
    serve.add_argument("--datasets", action="append", default=[], metavar="DIR",
                       help="folder searched for the datasets queries name (repeatable)")
    serve.add_argument("--camera", default=None,
                       help="dataset camera shown (default: each dataset's first)")

    annotator = commands.add_parser("annotator", help="manage annotators")
    actions = annotator.add_subparsers(dest="action", required=True, parser_class=_Parser)
    add = with_db(actions.add_parser("add", help="create an annotator and print its token"))
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may read others' answers")
    with_db(actions.add_parser("list", help="list annotators"))

    prog = with_db(commands.add_parser("progress", help="queue and label counts"))
    prog.add_argument("--project", default=None, help="one project only")
    cli_tools.add_commands(commands, with_db)  # simulate, export --parquet, import
    enqueue_command.add_command(commands, with_db)
    return parser


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it resolves to a network address


def serve(db: str, host: str, port: int, certfile: str | None, keyfile: str | None,
          videos: str | None = None, datasets: list[str] | tuple = (),
          camera: str | None = None) -> None:
    if (certfile is None) != (keyfile is None):
        raise ConfigError("TLS needs both --ssl-certfile and --ssl-keyfile: give both or none")
    tls = certfile is not None
    if not is_loopback(host):
        advice = "" if tls else (
            "; serve with TLS (--ssl-certfile cert.pem --ssl-keyfile key.pem) on an untrusted "
            "network"
        )
        print(f"warning: serving on {host}, so annotators' tokens cross the network{advice}",
              file=sys.stderr)
    import uvicorn

    from robopref.label.datasets import DatasetResolver
    from robopref.label.server import create_app
    from robopref.label.video import VideoCache, dataset_traces, default_video_folder

    logging.basicConfig(format="%(levelname)s: %(name)s: %(message)s")
    logging.getLogger("robopref.label.video").setLevel(logging.INFO)  # one line per video
    resolver = DatasetResolver(datasets)  # a missing search root fails before binding
    cache = VideoCache(videos or default_video_folder(db), resolver, camera=camera)
    try:
        # Opens and migrates now: a bad --db fails before binding.
        app = create_app(db, videos=cache, traces=dataset_traces(resolver))
        scheme = "https" if tls else "http"
        print(f"serving labels from {app.state.db.url} on {scheme}://{host}:{port}, videos "
              f"in {cache.folder}", file=sys.stderr)
        uvicorn.run(app, host=host, port=port, ssl_certfile=certfile, ssl_keyfile=keyfile,
                    log_level="info")
    finally:
        cache.close()


def _print_progress(db: str, project: str | None) -> None:
    from robopref.label.database import open_database
    from robopref.label.export import agreement, progress

    database = open_database(db)
    try:
        p = progress(database, project)
        agree = agreement(database, project)
    finally:
        database.close()
    q = p.queries
    print(f"queries: {q['open']} open, {q['retired']} retired, {q['withdrawn']} withdrawn")
    print(f"labels:  {p.labels} ({p.cannot_tell} cannot tell)")
    for name, count in p.by_annotator.items():
        stats = agree.get(name)
        rate = "" if stats is None or stats.rate is None else (
            f", agrees with the majority on {stats.agreed}/{stats.compared} "
            f"({100 * stats.rate:.0f}%)"
        )
        print(f"  {name:<20} {count} labels{rate}")


def run(argv: list[str]) -> None:
    """Parse and run; raises :class:`RobopError` subclasses for bad input."""
    args = _parser().parse_args(argv)
    if cli_tools.run(args) or enqueue_command.run(args):
        return
    if args.command == "serve":
        serve(args.db, args.host, args.port, args.ssl_certfile, args.ssl_keyfile,
              args.videos, args.datasets, args.camera)
    elif args.command == "progress":
        _print_progress(args.db, args.project)
    else:
        from robopref.label.database import open_database
        from robopref.label.store import LabelStore

        database = open_database(args.db)
        try:
            store = LabelStore(database)
            if args.action == "add":
                annotator, token = store.create_annotator(args.name, admin=args.admin)
                role = "admin" if annotator.is_admin else "annotator"
                print(f"created {role} {annotator.name}; token (shown once, keep it secret):",
                      file=sys.stderr)
                print(token)
            else:
                for a in store.annotators():
                    print(f"{a.name}{' (admin)' if a.is_admin else ''}")
        finally:
            database.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``robopref label ARGS`` calls ``main(ARGS)``; bad input exits 2 with one
    line on stderr, like the other subcommands."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        _parser().print_help()
        return
    try:
        run(argv)
    except RobopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
