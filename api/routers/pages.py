"""The customer's pages, reached from the signed links in every message (no account):

- `GET /v1/status/{token}`: the line as its customer reads it (`domain.line.page`): the item by
  name, its state, the expected date and how sure it is, what happens next and when, shipments
  with tracking, money, and the choices open now as buttons.
- `GET` and `POST /v1/survey/{token}`: the survey after the wait, a score of 1 to 5 and a
  comment, once per line (a second answer is refused, 409, and the first kept).
- `POST /v1/status/{token}`: a button (a plain form: `action`, and `choice` for an offer or a
  substitute), carried out through the line's Updates like the per-choice links; answered with a
  redirect to the page, which shows what it did (post/redirect/get), or with the page and the
  refusal in place.

Refusals are pages too, with their status: 403 a tampered link or one for another page, 410 an
expired one, 404 a line unknown here, 409 (404, 410) what the line refuses, 422 a form that is
not one of the page's buttons, 503 a part that did not answer (asking again is safe).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from admission.errors import (
    AdmissionError,
    InvalidRequest,
    NotFound,
    Refused,
    Unavailable,
)
from api import auth
from api.deps import AdmissionDep, SettingsDep
from api.errors import REFUSAL_STATUS
from api.pages import PAGE, page, problem
from config.settings import Settings
from domain.links import LinkAction, LinkClaims, LinkError, verify

router = APIRouter(tags=["customer"])

PageToken = Annotated[str, Path(max_length=4300, description="a customer's signed link")]
"""Any text: a malformed link is answered with the same readable 403 page as a tampered one."""

PAGE_REFUSALS: dict[int | str, dict[str, Any]] = {
    status: {"description": description, **PAGE}
    for status, description in {
        403: "a tampered link, or one for another page",
        404: "no such line here",
        409: "the line refuses the choice (already shipped or cancelled, an offer used)",
        410: "the link or the offer expired",
        503: "a part did not answer; asking again is safe",
    }.items()
}
PAGE_REFUSALS[422] = {
    "description": "a form that is not one of the page's buttons (a page); a malformed link or "
    "query (the fields named, as JSON)",
    "content": {
        **PAGE["content"],
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}},
    },
}


def form_body(schema: str) -> dict[str, Any]:
    """The OpenAPI request body of a page's plain HTML form, read by hand (`_form`)."""
    media = {"schema": {"$ref": f"#/components/schemas/{schema}"}}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": media},
        }
    }


class Answer(StrEnum):
    """What a pressed button did, shown on the page it redirects to."""

    WAITING = "waiting"
    OFFER_ACCEPTED = "offer_accepted"
    SUBSTITUTED = "substituted"
    CANCELLED = "cancelled"
    CANCELLING = "cancelling"


def page_claims(settings: Settings, token: str, action: LinkAction) -> LinkClaims | HTMLResponse:
    """The link's claims, or the page that refuses it."""
    try:
        claims = verify(settings.signing_key, token)
    except LinkError as exc:
        return problem(exc.status, exc.reason)
    if claims.action is not action:
        return problem(403, "This link is for another page. Please use the link from your email.")
    return claims


def refusal(exc: AdmissionError) -> tuple[int, str]:
    """The HTTP status and the sentence for a refusal from the service layer."""
    if isinstance(exc, Refused):
        return REFUSAL_STATUS.get(exc.kind, 409), exc.message
    if isinstance(exc, NotFound):
        return 404, "We could not find this order. Please contact us and we will help."
    if isinstance(exc, InvalidRequest):
        return 422, "That is not one of the choices on this page. Please choose again."
    if isinstance(exc, Unavailable):
        return 503, "We could not reach your order just now. Please try again in a minute."
    return 409, str(exc)


async def _status_page(
    admission: AdmissionDep,
    settings: Settings,
    claims: LinkClaims,
    action: str,
    *,
    status: int = 200,
    done: Answer | None = None,
    error: str | None = None,
) -> HTMLResponse:
    """The page in the customer's language, in the seller's words when their template folder
    has them; `done`: what the button just pressed did, worded by the page."""
    try:
        found = await admission.customer_page(claims.line)
    except (NotFound, Unavailable) as exc:
        code, reason = refusal(exc)
        return problem(code, reason)
    return page(
        "status.html",
        status,
        folder=settings.templates_dir,
        locale=found.locale,
        page=found,
        action=action,
        done=done.value if done is not None else None,
        error=error,
    )


@router.get(
    "/v1/status/{token}",
    response_class=HTMLResponse,
    responses={200: PAGE, **PAGE_REFUSALS},
)
async def status_page(
    token: PageToken,
    settings: SettingsDep,
    admission: AdmissionDep,
    request: Request,
    done: Annotated[Answer | None, Query(description="what the button just pressed did")] = None,
) -> Response:
    """The customer's status page. A GET never acts: mail scanners open links too."""
    claims = page_claims(settings, token, LinkAction.STATUS)
    if isinstance(claims, HTMLResponse):
        return claims
    return await _status_page(admission, settings, claims, request.url.path, done=done)


@router.post(
    "/v1/status/{token}",
    response_class=HTMLResponse,
    status_code=303,
    responses={303: {"description": "done: see the page, which says what it did"}, **PAGE_REFUSALS},
    openapi_extra=form_body("PageChoiceBody"),
)
async def press(
    token: PageToken, settings: SettingsDep, admission: AdmissionDep, request: Request
) -> Response:
    """A button of the status page, carried out as the customer's choice."""
    claims = page_claims(settings, token, LinkAction.STATUS)
    if isinstance(claims, HTMLResponse):
        return claims
    # The wait and cancel buttons send no choice.
    body = await _form(request)
    try:
        answer = await admission.choose_on_page(auth.customer(claims), claims.line, body)
    except AdmissionError as exc:
        code, reason = refusal(exc)
        return await _status_page(
            admission, settings, claims, request.url.path, status=code, error=reason
        )
    return RedirectResponse(f"{request.url.path}?done={answer.result}", status_code=303)


@router.get(
    "/v1/survey/{token}", response_class=HTMLResponse, responses={200: PAGE, **PAGE_REFUSALS}
)
async def survey_page(
    token: PageToken, settings: SettingsDep, admission: AdmissionDep, request: Request
) -> Response:
    """The survey after the wait: a form, or the thanks once answered."""
    claims = page_claims(settings, token, LinkAction.SURVEY)
    if isinstance(claims, HTMLResponse):
        return claims
    return await _survey_page(admission, claims, request.url.path)


async def _survey_page(
    admission: AdmissionDep,
    claims: LinkClaims,
    action: str,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    try:
        product, answered = await admission.survey(claims.line)
    except (NotFound, Unavailable) as exc:
        code, reason = refusal(exc)
        return problem(code, reason)
    return page(
        "survey.html", status, product=product, answered=answered, action=action, error=error
    )


@router.post(
    "/v1/survey/{token}",
    response_class=HTMLResponse,
    status_code=303,
    responses={303: {"description": "kept: see the page, which thanks"}, **PAGE_REFUSALS},
    openapi_extra=form_body("SurveyBody"),
)
async def answer_survey(
    token: PageToken, settings: SettingsDep, admission: AdmissionDep, request: Request
) -> Response:
    """The customer's answer, kept once per line."""
    claims = page_claims(settings, token, LinkAction.SURVEY)
    if isinstance(claims, HTMLResponse):
        return claims
    body = await _form(request)
    try:
        await admission.answer_survey(claims.line, body)
    except AdmissionError as exc:
        code, reason = refusal(exc)
        if isinstance(exc, InvalidRequest):
            reason = "Please choose a score from 1 to 5."
        return await _survey_page(admission, claims, request.url.path, code, reason)
    return RedirectResponse(request.url.path, status_code=303)


async def _form(request: Request) -> dict[str, str]:
    """A plain HTML form's fields; an empty field is a field not given."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str) and value}
