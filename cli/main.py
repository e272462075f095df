"""The `backorders` console script.

    backorders dev                  the embedded stack in the foreground (Ctrl-C stops it)
    backorders demo [--lines N]     a burst of backorders through the HTTP API

Settings come from `BACKORDERS_*` environment variables (see the README's table).
Exit codes: 0 success; 1 the stack did not start, or the demo saw a request fail or its lines
never settled; 2 usage or configuration error (a bad setting, a port in use); 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from cli.demo import run_demo
from cli.dev import PortInUseError, StackError, run_dev
from domain.policy import load_policy
from domain.settings import Settings

DEFAULT_DEMO_LINES = 300
DEFAULT_DEMO_TIMEOUT = 300.0


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backorders",
        description="Backordered order lines carried from sold to shipped or refunded, "
        "on Temporal. Configured by BACKORDERS_* environment variables.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "dev",
        help="run the embedded stack (Temporal dev server, worker, API, simulators)",
        description="Run the Temporal dev server, the store, the simulators, the worker and the "
        "API in the foreground, with state in BACKORDERS_STATE_DIR. Ctrl-C stops it; starting "
        "it again on the same folder resumes every workflow.",
    )
    demo = commands.add_parser(
        "demo",
        help="drive a burst of backorders through the HTTP API and summarize it",
        description="Create a few SKUs, backorder N lines, cancel some, deliver stock in parts, "
        "wait for the lines to settle and print a summary. Uses the stack answering at --api, "
        "or starts the embedded stack in this process when none answers.",
    )
    demo.add_argument(
        "--lines", type=positive_int, default=DEFAULT_DEMO_LINES, help="backordered lines to start"
    )
    demo.add_argument(
        "--api",
        metavar="URL",
        help="API of a running stack (default: http://127.0.0.1:$BACKORDERS_API_PORT, "
        "started here if nothing answers)",
    )
    demo.add_argument(
        "--keep",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep a stack the demo started running after the summary, until Ctrl-C "
        "(default: when stdin is a terminal)",
    )
    demo.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_DEMO_TIMEOUT,
        metavar="SECONDS",
        help="give up waiting for the lines to settle after this long (default: %(default).0f)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        settings.supplier_token_map  # noqa: B018 - refuse a malformed value now, not mid-demo
        load_policy(settings.policy_file)
    except ValidationError as exc:
        for error in exc.errors():
            variable = "BACKORDERS_" + "_".join(map(str, error["loc"])).upper()
            print(f"backorders: {variable}: {error['msg']}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"backorders: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "dev":
            return asyncio.run(run_dev(settings))
        keep: bool = sys.stdin.isatty() if args.keep is None else args.keep
        return asyncio.run(
            run_demo(settings, lines=args.lines, api=args.api, keep=keep, wait_seconds=args.timeout)
        )
    except PortInUseError as exc:
        print(f"backorders: {exc}", file=sys.stderr)
        return 2
    except StackError as exc:
        print(f"backorders: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
