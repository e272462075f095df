"""Operations commands: `status`, `list`, `cancel`, `metrics` and `health`, over the HTTP API.

They go through the API (not the store or Temporal directly) so that they obey the same rules
and the same credentials as every other caller, with the one client of the API
(`client.http.ApiClient`): the ops token from `BACKORDERS_OPS_TOKEN` (an environment variable,
never an argument, so it stays out of shell history and `ps`). A 503 that says when to ask
again is asked again, a few times, with backoff; the command says so on stderr.

Tables for people; `--json` prints the API's own JSON for scripts. Exit codes:

| code | meaning |
|---|---|
| 0 | done (a list may be empty) |
| 1 | the API could not be reached, or failed (5xx, after the retries) |
| 2 | usage or configuration error |
| 3 | no such line |
| 4 | the credentials were refused (401 or 403) |
| 5 | refused by the line's state: it already shipped or was cancelled (409) |
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from client.http import ApiClient, ApiError, Retry
from config.settings import Settings

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CREDENTIALS = 4
EXIT_REFUSED = 5
_EXIT_BY_STATUS = {
    401: EXIT_CREDENTIALS,
    403: EXIT_CREDENTIALS,
    404: EXIT_NOT_FOUND,
    409: EXIT_REFUSED,
    422: EXIT_USAGE,
}
"""The API's refusals and the exit code each becomes; any other error status is EXIT_UNAVAILABLE."""

OPS_RETRY = Retry(attempts=5, first_delay=0.5, max_delay=5.0, within=30.0)
"""A person is waiting: a few tries within half a minute."""


class OpsError(Exception):
    """A command that cannot be done; the message is for the person at the terminal."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Ops:
    api: ApiClient
    console: Console
    as_json: bool = False

    @classmethod
    def from_settings(
        cls, settings: Settings, api: str | None, *, as_json: bool, retry: Retry = OPS_RETRY
    ) -> Ops:
        base = api or f"http://127.0.0.1:{settings.api_port}"
        client = ApiClient(base, settings.ops_token, retry=retry, timeout=60)
        return cls(client, Console(), as_json)

    async def call(self, method: str, path: str, **options: Any) -> httpx.Response:
        """The API's 2xx answer; OpsError (with its exit code) for anything else."""
        try:
            response = await self.api.answered(method, path, **options)
        except ApiError as exc:
            raise self._error(exc) from exc
        finally:
            self._report_retries()
        return response

    def _error(self, error: ApiError) -> OpsError:
        if error.status is None:
            return OpsError(
                f"the API at {self.api.base_url} did not answer ({error.detail}); is the stack "
                "running? (--api URL, or BACKORDERS_API_PORT)",
                EXIT_UNAVAILABLE,
            )
        code = _EXIT_BY_STATUS.get(error.status)
        if code is None:
            tries = self.api.tally.retries + 1
            asked = f" (asked {tries} times)" if tries > 1 else ""
            return OpsError(
                f"the API answered {error.status}{asked}: {error.detail}", EXIT_UNAVAILABLE
            )
        detail = error.detail
        if code == EXIT_CREDENTIALS:
            detail += " (check BACKORDERS_OPS_TOKEN)"
        return OpsError(detail, code)

    def _report_retries(self) -> None:
        tally = self.api.tally
        if tally.retries:
            why = ", ".join(f"{reason} x{count}" for reason, count in tally.reasons.items())
            print(
                f"asked again {tally.retries} time{'s' if tally.retries != 1 else ''} ({why}); "
                f"{tally.retried} request{'s' if tally.retried != 1 else ''} retried and "
                f"answered, {tally.failed} failed",
                file=sys.stderr,
            )

    def emit(self, data: Any, render: Callable[[], None]) -> int:
        if self.as_json:
            print(json.dumps(data, indent=2, sort_keys=True))
        else:
            render()
        return EXIT_OK

    # ---- commands -----------------------------------------------------------------------

    async def status(self, order_id: str, line_id: str) -> int:
        line = (await self.call("GET", f"/v1/backorders/{order_id}/{line_id}")).json()
        return self.emit(line, lambda: self.console.print(status_table(line)))

    async def list(self, filters: dict[str, Any]) -> int:
        params = {key: value for key, value in filters.items() if value not in (None, False)}
        lines = (await self.call("GET", "/v1/backorders", params=params)).json()

        def render() -> None:
            self.console.print(lines_table(lines))
            shown = f"{len(lines)} line{'s' if len(lines) != 1 else ''}"
            more = " (more with --limit/--offset)" if len(lines) == filters["limit"] else ""
            self.console.print(f"{shown}{more}")

        return self.emit(lines, render)

    async def cancel(
        self, order_id: str, line_id: str, reason: str, *, buyer_requested: bool = False
    ) -> int:
        path = f"/v1/backorders/{order_id}/{line_id}/cancel"
        body: dict[str, Any] = {"reason": reason}
        if buyer_requested:
            body["buyer_requested"] = True
        # Asking again after a 503 is safe: a cancel that took effect is not made twice.
        response = await self.call("POST", path, json=body, repeatable=True)
        result = response.json()

        def render() -> None:
            if response.status_code == 202:
                self.console.print(f"{order_id}/{line_id}: cancelling; the refund is under way")
            else:
                self.console.print(f"{order_id}/{line_id}: cancelled")
                self.console.print(cancel_table(order_id, line_id, result))

        return self.emit(result, render)

    async def metrics(self) -> int:
        figures = (await self.call("GET", "/v1/metrics")).json()
        return self.emit(figures, lambda: self.console.print(metrics_table(figures)))

    async def health(self) -> int:
        """The marketplace health of `/v1/metrics`: `--json` prints that part of it."""
        health = (await self.call("GET", "/v1/metrics")).json()["marketplace_health"]
        return self.emit(health, lambda: self.console.print(health_table(health)))


def _when(value: str | None) -> str:
    if not value:
        return "-"
    moment = datetime.fromisoformat(value).astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"


def _rate(rate: dict[str, Any]) -> str:
    if rate["rate"] is None:
        return f"- (0 of {rate['denominator']})"
    return f"{rate['rate'] * 100:.1f} % ({rate['numerator']} of {rate['denominator']})"


def cancel_table(order_id: str, line_id: str, result: dict[str, Any]) -> Table:
    """What a cancel did: the line's state, the units given back to the queue, the refund."""
    table = Table(title=f"{order_id}/{line_id}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("state", str(result.get("state")))
    table.add_row("released to the queue", f"{result.get('released_quantity') or 0} units")
    refund = result.get("refund")
    if refund:
        table.add_row(
            "refund",
            f"{refund['amount']} {refund['currency']} for {refund['quantity']} units "
            f"({refund['refund_id']})",
        )
    else:
        table.add_row("refund", "none (nothing was charged for what is left)")
    return table


def status_table(line: dict[str, Any]) -> Table:
    table = Table(title=f"{line['order_id']}/{line['line_id']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("state", line["state"]),
        ("SKU", f"{line['quantity']} x {line['sku']}"),
        ("allocated / shipped", f"{line['allocated_quantity']} / {line['shipped_quantity']}"),
        ("channel", line["channel"]),
        ("customer", f"{line['customer']['id']} ({line['customer']['tier']})"),
        ("ordered", _when(line["ordered_at"])),
        ("ship by", _when(line["ship_by"])),
        ("ETA", _when(line.get("eta"))),
        ("escalation level", str(line.get("escalation_level", 0))),
    ]
    if line.get("next_deadline"):
        rows.append(("next", f"{line.get('next_action')} at {_when(line['next_deadline'])}"))
    if line.get("cancel_reason"):
        rows.append(("cancelled because", line["cancel_reason"]))
    open_offers = [offer for offer in line.get("offers", []) if offer.get("status") == "open"]
    if open_offers:
        rows.append(("open offers", ", ".join(offer["offer_id"] for offer in open_offers)))
    for shipment in line.get("shipments", []):
        rows.append(("shipment", f"{shipment['quantity']} units, {shipment['tracking_number']}"))
    if line.get("messages"):
        last = line["messages"][-1]
        rows.append(("messages", f"{len(line['messages'])}, last: {last['kind']}"))
    for name, value in rows:
        table.add_row(name, value)
    return table


def lines_table(lines: list[dict[str, Any]]) -> Table:
    table = Table()
    for header in ("order/line", "SKU", "qty", "state", "channel", "ship by", "ETA", "level"):
        # Ids wrap rather than end in "...": ops copy them into the next command.
        table.add_column(header, overflow="fold")
    now = datetime.now(UTC)
    for line in lines:
        ship_by = datetime.fromisoformat(line["ship_by"])
        late = ship_by < now and line["state"] not in ("shipped", "cancelled")
        table.add_row(
            f"{line['order_id']}/{line['line_id']}",
            line["sku"],
            str(line["quantity"]),
            line["state"],
            line["channel"],
            f"[red]{_when(line['ship_by'])}[/red]" if late else _when(line["ship_by"]),
            _when(line.get("eta")),
            str(line.get("escalation_level", 0)),
        )
    return table


def metrics_table(figures: dict[str, Any]) -> Table:
    table = Table(title=f"backorders at {_when(figures['generated_at'])}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for state, count in figures["open_lines"].items():
        table.add_row(f"open: {state}", str(count))
    for outcome, count in figures["closed_lines"].items():
        table.add_row(f"closed: {outcome}", str(count))
    for name, key in (("backorder age", "backorder_age"), ("time to ship", "time_to_ship")):
        spread = figures[key]
        table.add_row(
            name,
            f"p50 {_duration(spread['p50_seconds'])}, p90 {_duration(spread['p90_seconds'])} "
            f"({spread['count']} lines)",
        )
    for name, key in (
        ("arrival fill rate", "arrival_fill_rate"),
        ("cancellation rate", "cancellation_rate"),
        ("SLA breach rate", "sla_breach_rate"),
        ("offer acceptance", "offer_acceptance_rate"),
    ):
        table.add_row(name, _rate(figures[key]))
    sent = ", ".join(f"{kind} {count}" for kind, count in figures["messages_sent"].items() if count)
    table.add_row("messages sent", sent or "none")
    return table


_STATUS_STYLE = {"ok": "green", "warning": "yellow", "over": "bold red"}


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f} %"


def health_table(health: dict[str, Any]) -> Table:
    """One row per channel, figure and window: the figure, its threshold, and how many more bad
    orders the window can take before it misses it (negative: how many must leave it first)."""
    table = Table(title=f"marketplace health at {_when(health['generated_at'])}")
    for header in ("channel", "figure", "window", "value", "threshold", "headroom", "status"):
        table.add_column(header, justify="right" if header == "headroom" else "left")
    for channel in health["channels"]:
        for figure in channel["figures"]:
            bound = {"max": "<", "min": ">"}[figure["direction"]]
            bound += "=" if figure["inclusive"] else ""
            value = _share(figure["ratio"])
            value += f" ({figure['numerator']} of {figure['denominator']})"
            if figure.get("cancelled_by"):
                who = ", ".join(f"{by} {count}" for by, count in figure["cancelled_by"].items())
                value += f"; cancelled by {who}"
            style = _STATUS_STYLE[figure["status"]]
            table.add_row(
                channel["channel"],
                figure["figure"],
                f"{figure['window_days']} d",
                value,
                f"{bound} {_share(figure['threshold'])}",
                f"{figure['headroom_orders']} orders",
                f"[{style}]{figure['status']}[/{style}]",
            )
        if channel["overdue_lines"]:
            table.add_row(
                channel["channel"],
                "open lines past ship-by",
                "now",
                f"{channel['overdue_lines']} (oldest "
                f"{_duration(channel['oldest_overdue_seconds'])} late)",
                "-",
                "-",
                "[yellow]overdue[/yellow]",
            )
    return table
