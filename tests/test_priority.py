"""Priority rules as policy: a line's class comes from its customer's tier and its channel when
it starts, orders the queue before ship-by, and never changes when the policy does."""

from __future__ import annotations

from client import BackorderClient
from domain.policy import DEFAULT_POLICY, PriorityPolicy, PriorityRule, ServicePolicy
from domain.values import Channel, CustomerTier
from tests.support.factories import backorder, hours_ago, new_id
from tests.support.stack import Stack

VIP_FIRST = PriorityPolicy(
    default_class=2,
    rules=[
        PriorityRule(tiers=[CustomerTier.VIP], priority_class=0),
        PriorityRule(channels=[Channel.AMAZON], priority_class=1),
    ],
)


def test_the_first_matching_rule_gives_the_class_and_none_gives_the_default() -> None:
    assert VIP_FIRST.class_for(CustomerTier.VIP, Channel.AMAZON) == 0
    assert VIP_FIRST.class_for(CustomerTier.STANDARD, Channel.AMAZON) == 1
    assert VIP_FIRST.class_for(CustomerTier.STANDARD, Channel.WEB) == 2
    assert PriorityPolicy().class_for(CustomerTier.VIP, Channel.WEB) == 0


def test_a_policy_file_without_priority_keeps_every_line_in_class_0() -> None:
    policy = ServicePolicy.model_validate({"priority": {"rules": [{"priority_class": 3}]}})

    assert policy.priority.class_for(CustomerTier.STANDARD, Channel.ETSY) == 3
    assert DEFAULT_POLICY.priority.class_for(CustomerTier.VIP, Channel.AMAZON) == 0


async def test_vip_lines_go_first_and_a_new_policy_never_reorders_waiting_lines(
    stack: Stack,
) -> None:
    sku = new_id("sku")
    await stack.put_sku(sku)
    standard, vip, later = new_id("std"), new_id("vip"), new_id("new")
    policy = DEFAULT_POLICY.model_copy(update={"priority": VIP_FIRST})
    first = BackorderClient(stack.admission(policy=policy))
    await first.start(backorder(standard, sku, ordered_at=hours_ago(5)))
    vip_body = backorder(vip, sku, ordered_at=hours_ago(1))
    vip_body["customer"]["tier"] = "vip"
    await first.start(vip_body)
    # The policy changes: no rules, every new line in class 0.
    await stack.client().start(backorder(later, sku, ordered_at=hours_ago(0.5)))
    for order in (standard, vip, later):
        await stack.wait_state(order, "waiting")

    assert (await stack.line(standard))["priority_class"] == 2
    assert (await stack.line(vip))["priority_class"] == 0
    assert (await stack.line(later))["priority_class"] == 0

    # Class 0 first (the VIP, then the line started under the new policy), though the standard
    # line was ordered earlier and, under the new policy, would be class 0 too.
    await stack.receive(sku, 2)
    await stack.wait_line(vip, lambda line: line["shipped_quantity"] == 1)
    await stack.wait_line(later, lambda line: line["shipped_quantity"] == 1)
    assert (await stack.line(standard))["state"] == "waiting"
    await stack.receive(sku, 1)
    await stack.wait_line(standard, lambda line: line["shipped_quantity"] == 1)
    stack.assert_rules(sku)
