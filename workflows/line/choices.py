"""What a waiting line offers its customer, and what it does with their choices: apologies with
goodwill offers (the ladder's rungs), an offer taken, a substitute taken.

Which offers a line gets is the policy's rule (`domain.policy.Rung.rule_for`: by the line's
value and the customer's tier); what taking one does to the line is the book's
(`LineBook.accept_offer`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from domain import contract
from domain.contract.lines import (
    FIND_SUBSTITUTES,
    GRANT_OFFER,
    RECORD_OUTREACH,
    REFUND,
    SUBSTITUTE_LINE,
)
from domain.line.choices import (
    FindSubstitutes,
    Offer,
    OfferGrant,
    OfferStatus,
    OutreachInput,
    SubstituteInput,
    SubstituteOption,
)
from domain.line.effects import RefundInput, RefundRecord
from domain.line.messages import LinkSpec, MessageKind
from domain.links import LinkAction
from domain.policy import OfferKind
from workflows.etas import refresh_etas
from workflows.line import payment
from workflows.line.run import LineRun


async def offer(line: LineRun, index: int) -> None:
    """A rung of the ladder: apologise, with the offers the catalogue gives this line."""
    offers = await make_offers(line, index, workflow.now())
    if not offers:
        return
    links = [line.link(LinkAction.ACCEPT_OFFER, each) for each in offers]
    substitutes, substitute_links = await substitute_choices(line)
    await line.send(
        MessageKind.APOLOGY_OFFER,
        f"offer:{line.policy.channel.ladder[index].name}",
        offers=offers,
        substitutes=substitutes,
        links=[*links, *substitute_links, line.link(LinkAction.CANCEL)],
    )


async def make_offers(line: LineRun, index: int, now: datetime) -> list[Offer]:
    """A rung of the ladder reached at `now`: the offers the catalogue gives this line (none
    for some lines), and a personal-outreach task when the rule asks for one."""
    rung = line.policy.channel.ladder[index]
    line.book.timeline.record_rung(index)
    request = line.request
    rule = rung.rule_for(request.line_total(), request.customer.tier)
    if rule is None:
        return []
    expires_at = now + line.policy.days(line.policy.offer_valid_days)
    offers = [
        Offer(
            offer_id=f"{rung.name}-{number}",
            rung=rung.name,
            kind=spec.kind,
            percent=spec.percent,
            points=spec.points,
            description=spec.describe(),
            expires_at=expires_at,
        )
        for number, spec in enumerate(rule.offers, 1)
    ]
    line.book.offers.extend(offers)
    if rule.outreach:
        await line.call(
            RECORD_OUTREACH,
            OutreachInput(
                line_key=line.key,
                request=request,
                rung=rung.name,
                reason=f"{rung.name}: {request.customer.tier.value} customer, "
                f"{request.line_total():.2f} {request.currency} waiting",
            ),
            summary=f"outreach task for customer service ({rung.name})",
        )
    return offers


def offer_refusal(line: LineRun, offer_id: str) -> Offer:
    """The offer a customer may take now; else the refusal they read (an ApplicationError)."""
    found = line.book.find_offer(offer_id)
    if found is None:
        raise ApplicationError(
            "We could not find this offer for your order.", type=contract.ERROR_OFFER_UNKNOWN
        )
    if found.status is OfferStatus.ACCEPTED:
        raise ApplicationError(
            "You have already accepted this offer.", type=contract.ERROR_OFFER_USED
        )
    if found.status is OfferStatus.WITHDRAWN:
        raise ApplicationError(
            "You have already chosen another offer.", type=contract.ERROR_OFFER_USED
        )
    if workflow.now() >= found.expires_at:
        raise ApplicationError("This offer has expired.", type=contract.ERROR_OFFER_EXPIRED)
    return found


async def accept_offer(line: LineRun, offer_id: str) -> Offer:
    taken = offer_refusal(line, offer_id)
    line.book.accept_offer(taken)
    async with line.lock:
        detail = await grant(line, taken)
    await line.send(
        MessageKind.OFFER_ACCEPTED,
        f"accepted:{taken.offer_id}",
        detail=detail,
        accepted_offer_id=taken.offer_id,
    )
    return taken


async def grant(line: LineRun, taken: Offer) -> str:
    """Deliver an accepted offer; returns what to tell the customer."""
    if taken.kind is OfferKind.FREE_EXPEDITED_SHIPPING:
        line.book.expedited = True
        return "It will ship by expedited shipping, at no cost to you, as soon as it arrives."
    if taken.kind is OfferKind.PARTIAL_REFUND:
        amount = line.request.line_total() * Decimal(taken.percent or 0) / 100
        # Taken off what is still to be charged first; only what was charged is refunded.
        to_refund = payment.discount(line, amount)
        if to_refund <= 0:
            return f"We have taken {amount:.2f} {line.request.currency} off what you will pay."
        refund = await pay_back(
            line,
            to_refund,
            event=f"offer:{taken.offer_id}",
            reason=f"goodwill: {taken.description}",
        )
        return f"We have refunded {refund.amount} {refund.currency} to you."
    return await line.call(
        GRANT_OFFER,
        OfferGrant(line_key=line.key, request=line.request, offer=taken),
        summary=f"grant {taken.kind.value}",
    )


async def pay_back(line: LineRun, amount: Decimal, *, event: str, reason: str) -> RefundRecord:
    """A refund of part of the price while the line goes on (goodwill, cheaper substitute)."""
    paid = line.book.payment
    money = paid.money(amount) if paid is not None else f"{amount:.2f}"
    refund = await line.call(
        REFUND,
        RefundInput(
            line_key=line.key,
            request=line.request,
            quantity=0,
            reason=reason,
            event=event,
            amount=money,
        ),
        summary=f"refund {money}: {reason}",
    )
    line.book.refunds.append(refund)
    if paid is not None:
        paid.record_refund(Decimal(money))
    return refund


async def take_substitute(line: LineRun, sku: str) -> str:
    """Move the line to an in-stock substitute; its held units go back to the old SKU's queue.
    A cheaper substitute's difference is refunded; a dearer one costs the customer nothing.
    Returns what to tell the customer."""
    async with line.lock:
        line.refuse_if_final()
        old = line.request
        try:
            moved = await line.call(
                SUBSTITUTE_LINE,
                SubstituteInput(
                    line_key=line.key,
                    from_sku=old.sku,
                    to_sku=sku,
                    locations=list(line.policy.channel.locations),
                ),
                summary=f"move to substitute {sku}",
            )
        except ActivityError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError):
                raise ApplicationError(cause.message, type=cause.type) from None
            raise
        line.line.request = old.model_copy(update={"sku": sku})
        line.book.record_substitute(moved)
        line.refresh_state()
        line.show(contract.SA_SKU.value_set(sku))
        if moved.reallocated:
            await line.signal_others(moved.reallocated)
        await refresh_etas(old.sku)
        detail = f"You chose {sku} in place of {old.sku}; it ships now."
        saved = Decimal(old.unit_price) - Decimal(moved.unit_price or old.unit_price)
        to_refund = payment.discount(line, saved * moved.quantity) if saved > 0 else Decimal(0)
        if saved > 0 and to_refund <= 0:
            detail += " It costs less: you will be charged less."
        elif to_refund > 0:
            refund = await pay_back(
                line,
                to_refund,
                event=f"substitute:{sku}",
                reason=f"substitute {sku} costs less",
            )
            detail += f" It costs less: we refunded {refund.amount} {refund.currency}."
    return detail


async def substitute_choices(
    line: LineRun, now: datetime | None = None
) -> tuple[list[SubstituteOption], list[LinkSpec]]:
    """The catalog's substitutes in stock for what the line still needs, with their links
    (valid from `now`, default the workflow's)."""
    options = await line.call(
        FIND_SUBSTITUTES,
        FindSubstitutes(sku=line.request.sku, quantity=line.request.quantity - line.book.shipped),
        summary="find in-stock substitutes",
    )
    expires_at = (now or workflow.now()) + line.policy.days(line.policy.offer_valid_days)
    links = [
        LinkSpec(action=LinkAction.SUBSTITUTE, offer_id=option.sku, expires_at=expires_at)
        for option in options
    ]
    return options, links
