"""Activity options the contract declares activities with: how long a call may take, and what
is retried."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from domain import contract

STORE_TIMEOUT = timedelta(seconds=30)
SERVICE_TIMEOUT = timedelta(seconds=30)
FAN_OUT_TIMEOUT = timedelta(minutes=10)
"""Signalling thousands of lines, recomputing a long queue's ETAs, alerting many subscribers:
allowed to take long, but they heartbeat, so that one lost with its worker (or whose completion
Temporal never received) is retried after HEARTBEAT_TIMEOUT, not after ten minutes."""
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[contract.ERROR_UNKNOWN_SKU, contract.ERROR_LINE_NOT_FOUND],
)
"""The store, the carrier and payments are retried without limit, a refusal (4xx) included: a line
must not be dropped, holding stock, because a service was down or misconfigured for an hour.
The failing activity shows in the UI until it succeeds. Only a missing SKU or line stops."""

MESSAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[contract.ERROR_OUTSIDE_SERVICE_REJECTED],
)
"""A message the notification service refuses for good (say, a bad address) is given up, so that
it never holds the line's shipment or refund; outages are still retried until they pass."""
