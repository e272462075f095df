"""The `backorders` console script.

    backorders dev                  the embedded stack in the foreground (Ctrl-C stops it)
    backorders demo [--lines N]     a burst of backorders through the HTTP API
    backorders demo --fast          the customer's side, live, on policy days of seconds
    backorders status ORDER LINE    one line, as operations see it
    backorders list [--sku ...]     lines by SKU, state, channel, order, or overdue
    backorders cancel ORDER LINE    cancel a line (held stock goes on, the customer is refunded)
    backorders metrics              the business figures
    backorders health               each channel's marketplace figures against their thresholds
    backorders migrate [--check]    bring the store's schema to this release's revision
    backorders simulators           serve the simulators of the outside services on their own
    backorders messages preview KIND  a message rendered with a sample line (--locale, --html)

Settings come from `BACKORDERS_*` environment variables (see the README's table).
Exit codes: 0 success; 1 the stack did not start or the API did not answer, or the demo saw a
request fail or its lines never settled, or the store could not be migrated (`--check`: is not
at this release's revision); 2 usage or configuration error (a bad setting, a port in use, a
state folder in use by another stack, production mode with a default secret); 3 no such line;
4 credentials refused; 5 the line's state refuses the action (already shipped or cancelled);
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from babel import Locale, UnknownLocaleError
from pydantic import ValidationError

from cli.ops import Ops, OpsError
from config.settings import Settings
from domain.line.messages import MessageKind
from domain.line.state import LineState
from domain.policy import load_policy
from domain.requests import Customer
from domain.values import Channel

DEFAULT_DEMO_LINES = 300
DEFAULT_DEMO_TIMEOUT = 300.0
OPS_COMMANDS = ("status", "list", "cancel", "metrics", "health")
STACK_COMMANDS = ("dev", "demo")
"""The commands that run the service itself: every server setting is checked before them."""


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
        "--fast",
        action="store_true",
        help="play the customer's side live on policy days of a few seconds: delay notices, "
        "offers taken and refused, a marketplace auto-cancel, a card hold renewed, surveys; "
        "about a minute, on a stack the demo starts with that policy; prints customers' status "
        "links to open in a browser",
    )
    demo.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_DEMO_TIMEOUT,
        metavar="SECONDS",
        help="give up waiting for the lines to settle after this long (default: %(default).0f)",
    )
    _add_ops_commands(commands)
    migrate = commands.add_parser(
        "migrate",
        help="bring the store's schema to this release's revision",
        description="Upgrade the store at BACKORDERS_DATABASE_URL to the newest schema revision "
        "this release knows, and say what was done. Safe to run again, and by several at once. "
        "A store made before migrations is recognised and taken over. Run it before starting "
        "the API and workers of a new release on PostgreSQL or in production, which refuse a "
        "store that is not at their revision.",
    )
    migrate.add_argument(
        "--check",
        action="store_true",
        help="change nothing: say where the schema stands, exit 1 unless at this release's "
        "revision",
    )
    simulators = commands.add_parser(
        "simulators",
        help="serve the simulators of the outside services on their own",
        description="Serve the carrier, payments, notifications and storefront simulators on "
        "BACKORDERS_SIMULATOR_PORT, recording in BACKORDERS_STATE_DIR, as `backorders dev` "
        "does; for a demo of a stack whose parts run apart (the compose file's demo profile).",
    )
    simulators.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    _add_messages_commands(commands)
    return parser


def _add_messages_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    messages = commands.add_parser(
        "messages",
        help="the customer messages' templates",
        description="Work on the templates of the messages to customers: the shipped defaults, "
        "or the seller's own in BACKORDERS_TEMPLATES_DIR.",
    )
    actions = messages.add_subparsers(dest="messages_command", required=True, metavar="ACTION")
    preview = actions.add_parser(
        "preview",
        help="render a message kind with a sample line",
        description="Render the template of one message kind with a sample line: the subject "
        "and text part to the terminal, the HTML part to a file. Uses BACKORDERS_TEMPLATES_DIR "
        "when set, the shipped defaults otherwise.",
    )
    preview.add_argument(
        "kind",
        choices=[kind.value for kind in MessageKind],
        metavar="KIND",
        help=f"one of: {', '.join(kind.value for kind in MessageKind)}",
    )
    preview.add_argument(
        "--locale",
        default="en",
        type=locale_tag,
        help="the customer's language, a BCP 47 tag (default: %(default)s)",
    )
    preview.add_argument(
        "--sample",
        type=positive_int,
        default=1,
        help="which sample line, for kinds with several (default: %(default)s)",
    )
    preview.add_argument("--html", type=Path, metavar="FILE", help="write the HTML part to FILE")


def locale_tag(text: str) -> str:
    """A BCP 47 tag Babel can write in, as `customer.locale` accepts."""
    try:
        Customer(id="preview", email="preview@example.com", locale=text)
        Locale.parse(text, sep="-")
    except (ValueError, UnknownLocaleError):
        raise argparse.ArgumentTypeError(f"{text} is not a locale we can write in") from None
    return text


def _add_ops_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """status, list, cancel, metrics, health: talk to a running stack's API with the ops token."""

    def ops_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        parser.add_argument(
            "--api",
            metavar="URL",
            help="API of the stack (default: http://127.0.0.1:$BACKORDERS_API_PORT)",
        )
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
        return parser

    status = ops_parser("status", "show one line: state, quantities, dates, next deadline")
    status.add_argument("order_id", metavar="ORDER")
    status.add_argument("line_id", metavar="LINE")
    listing = ops_parser("list", "list lines, newest first, filtered by every option given")
    listing.add_argument("--sku")
    listing.add_argument("--state", choices=[state.value for state in LineState])
    listing.add_argument("--channel", choices=[channel.value for channel in Channel])
    listing.add_argument("--order", dest="order_id", metavar="ORDER")
    listing.add_argument(
        "--overdue", action="store_true", help="only open lines whose ship-by has passed"
    )
    listing.add_argument("--limit", type=positive_int, default=100)
    listing.add_argument("--offset", type=int, default=0)
    cancel = ops_parser("cancel", "cancel a line: held stock goes to the next line, full refund")
    cancel.add_argument("order_id", metavar="ORDER")
    cancel.add_argument("line_id", metavar="LINE")
    cancel.add_argument("--reason", default="cancelled by operations")
    cancel.add_argument(
        "--buyer-requested",
        action="store_true",
        help="the buyer asked for it: recorded as the customer's cancel, which marketplaces do "
        "not hold against the seller",
    )
    ops_parser("metrics", "business figures: open lines, ages, rates, messages")
    ops_parser(
        "health",
        "marketplace health per channel: each figure over its window against its threshold, "
        "with the headroom in orders",
    )


def run_ops(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_ops(args, settings))


async def _ops(args: argparse.Namespace, settings: Settings) -> int:
    ops = Ops.from_settings(settings, args.api, as_json=args.json)
    try:
        if args.command == "status":
            return await ops.status(args.order_id, args.line_id)
        if args.command == "list":
            filters = {
                key: getattr(args, key)
                for key in ("sku", "state", "channel", "order_id", "overdue", "limit", "offset")
            }
            return await ops.list(filters)
        if args.command == "cancel":
            return await ops.cancel(
                args.order_id, args.line_id, args.reason, buyer_requested=args.buyer_requested
            )
        if args.command == "health":
            return await ops.health()
        return await ops.metrics()
    except OpsError as exc:
        print(f"backorders {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        await ops.api.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        settings.supplier_token_map  # noqa: B018 - refuse a malformed value now, not mid-demo
        load_policy(settings.policy_file)
        if args.command in STACK_COMMANDS:
            check_server_settings(settings)
    except ValidationError as exc:
        for error in exc.errors():
            variable = "BACKORDERS_" + "_".join(map(str, error["loc"])).upper()
            print(f"backorders: {variable}: {error['msg']}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"backorders: {exc}", file=sys.stderr)
        return 2
    if args.command in OPS_COMMANDS:
        return run_ops(args, settings)
    if args.command == "migrate":
        return run_migrate(settings, check=args.check)
    if args.command == "simulators":
        return run_simulators(settings, args.host)
    if args.command == "messages":
        from cli.messages import preview

        return preview(
            settings, MessageKind(args.kind), locale=args.locale, sample=args.sample, html=args.html
        )
    return run_stack_command(args, settings)


def run_migrate(settings: Settings, *, check: bool) -> int:
    """`backorders migrate`. Imported here: the migrations pull in the store and Alembic."""
    from sqlalchemy.exc import OperationalError

    from store import migrations
    from store.db import Database

    db = Database(settings.store_url)
    try:
        if check:
            state = migrations.require_current(db.engine)
            print(f"store at revision {state.revision}, the newest this release knows")
        else:
            for line in migrations.upgrade(db.engine).lines():
                print(line)
    except migrations.StoreSchemaError as exc:
        print(f"backorders migrate: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        store = db.engine.url.render_as_string(hide_password=True)
        print(
            f"backorders migrate: the store at {store} did not answer: {exc.orig}", file=sys.stderr
        )
        return 1
    finally:
        db.dispose()
    return 0


def run_simulators(settings: Settings, host: str) -> int:
    """`backorders simulators`. Imported here, like the stack."""
    import uvicorn

    from simulators.app import FaultConfigError, create_app, faults_from_env

    try:
        faults = faults_from_env()
    except FaultConfigError as exc:
        print(f"backorders: {exc}", file=sys.stderr)
        return 2
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    uvicorn.run(create_app(settings.state_dir, faults), host=host, port=settings.simulator_port)
    return 0


def check_server_settings(settings: Settings) -> None:
    """Settings only the stack uses, refused before anything starts (ValueError naming the
    variable). Imported here, like the stack, to keep the ops commands quick to start."""
    from activities.messages import check_templates
    from api.codec_server import cors_origins
    from api.pages import check_pages
    from client.backorders import temporal_tls
    from client.codec import key_ring
    from simulators.app import faults_from_env

    settings.require_production_ready()
    settings.sdk_metrics_bind  # noqa: B018 - a malformed address is refused now
    faults_from_env()
    key_ring(settings)
    cors_origins(settings)
    temporal_tls(settings)
    check_templates(settings.templates_dir, load_policy(settings.policy_file))
    check_pages(settings.templates_dir, load_policy(settings.policy_file))


def run_stack_command(args: argparse.Namespace, settings: Settings) -> int:
    """dev and demo. Imported here: the stack pulls in the server side (Temporal worker,
    FastAPI, the store), which would make every ops command take seconds to start."""
    from cli.demo import run_demo
    from cli.dev import PortInUseError, StackError, run_dev
    from cli.state_folder import StateFolderInUseError

    try:
        if args.command == "dev":
            return asyncio.run(run_dev(settings))
        keep: bool = sys.stdin.isatty() if args.keep is None else args.keep
        return asyncio.run(
            run_demo(
                settings,
                lines=args.lines,
                api=args.api,
                keep=keep,
                wait_seconds=args.timeout,
                fast=args.fast,
            )
        )
    except (PortInUseError, StateFolderInUseError) as exc:
        print(f"backorders: {exc}", file=sys.stderr)
        return 2
    except StackError as exc:
        print(f"backorders: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
