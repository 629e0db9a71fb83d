"""The support page (``pfilter serve``): an aiohttp app for support staff.

- Every route but the login form needs the access token (``PFILTER_SUPPORT_TOKEN``):
  as ``Authorization: Bearer <token>``, or the session cookie the login form sets
  (an HMAC of the token, so the cookie does not hold the token itself). Without it
  the answer is 401 with the login form only: no subject id, no subject data.
- ``/subject?id=`` shows the summary, recipients table, consent timeline, notices and
  erasure receipts; ``/subject/export.json?id=`` downloads the JSON export.
- ``POST /subject/erase`` needs the admin token (``PFILTER_SUPPORT_ADMIN_TOKEN``) as
  well and the subject id typed again as confirmation.
- ``/api/overview`` reads the worker's ``/metrics`` and returns the live numbers the
  home page refreshes.

Nothing here logs a request (the access log is off: a query string holds a subject
id, G6). Pages are no-store, framed by no one, and their one inline script carries a
per-response nonce in a strict Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
from aiohttp import web

from streams.config import Settings
from streams.errors import PFilterError
from streams.transparency import vocab
from streams.transparency.export import export_dict, export_json
from streams.transparency.html import page_context
from streams.transparency.overview import parse_metrics, with_rate
from streams.transparency.summary import SubjectSummary
from streams.transparency.text import environment

COOKIE = "pfilter_support"
#: A subject id longer than this is not one (keys are ids, CONTRACT §2); refusing it
#: early bounds the work a request can cause.
MAX_SUBJECT_LEN = 512
#: The worker's /metrics must answer within this, or the overview says it is unreachable.
_METRICS_TIMEOUT_S = 3.0

Loader = Callable[[Settings, str], SubjectSummary]
Eraser = Callable[[Settings, str], dict[str, Any]]

K_SETTINGS = web.AppKey("settings", Settings)
K_LOAD = web.AppKey("load", object)
K_ERASE = web.AppKey("erase", object)
K_PREV = web.AppKey("prev", dict)


def session_value(token: str) -> str:
    """The cookie value for a token: HMAC-SHA256(token, fixed label)."""
    return hmac.new(token.encode(), b"pfilter-support-session", hashlib.sha256).hexdigest()


def _authorized(request: web.Request) -> bool:
    token = request.app[K_SETTINGS].support_token
    if not token:
        return False
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), session_value(token).encode())


def _page(name: str, status: int = 200, **ctx: Any) -> web.Response:
    nonce = secrets.token_urlsafe(16)
    lang = ctx.pop("lang", "en")
    body = environment(True).get_template(name).render(lang=lang, L=vocab.words(lang)["labels"], nonce=nonce, **ctx)
    resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    resp.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        f"script-src 'nonce-{nonce}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    return resp


@web.middleware
async def _guard(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Token first (no route runs without it), then no-store and safe headers on every answer."""
    if request.path != "/login" and not _authorized(request):
        if request.path.startswith("/api/") or request.path.endswith(".json"):
            resp: web.StreamResponse = web.json_response({"error": "unauthorized"}, status=401)
        else:
            resp = _page("support_login.html.j2", status=401, error=None)
        resp.headers["WWW-Authenticate"] = 'Bearer realm="pfilter-support"'
    else:
        try:
            resp = await handler(request)
        except web.HTTPException as exc:  # answered as plain text, with the safe headers below
            resp = web.Response(status=exc.status, text=exc.text or exc.reason, content_type="text/plain")
            if "Location" in exc.headers:
                resp.headers["Location"] = exc.headers["Location"]
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Frame-Options"] = "DENY"
    return resp


def _subject_param(request: web.Request, source: Any = None) -> str:
    sid = (source if source is not None else request.query).get("id", "")
    sid = sid.strip() if isinstance(sid, str) else ""
    if not sid or len(sid) > MAX_SUBJECT_LEN:
        raise web.HTTPBadRequest(text="give a subject id (id=...)")
    return sid


def _lang(request: web.Request) -> str:
    lang = request.query.get("lang", "en")
    return lang if lang in vocab.WORDS else "en"


async def _summary(request: web.Request, subject: str) -> SubjectSummary:
    app = request.app
    loop = asyncio.get_running_loop()
    try:  # Kafka reads block: off the event loop, so the overview keeps refreshing
        return await loop.run_in_executor(None, app[K_LOAD], app[K_SETTINGS], subject)
    except PFilterError as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from None


# ------------------------------------------------------------------ routes
async def login_form(request: web.Request) -> web.Response:
    return _page("support_login.html.j2", error=None)


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    token = request.app[K_SETTINGS].support_token or ""
    given = str(form.get("token", ""))
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        return _page("support_login.html.j2", status=401, error="wrong token")
    resp = web.Response(status=303, headers={"Location": "/"})
    resp.set_cookie(COOKIE, session_value(token), httponly=True, samesite="Strict", path="/")
    return resp


async def logout(request: web.Request) -> web.Response:
    resp = web.Response(status=303, headers={"Location": "/login"})
    resp.del_cookie(COOKIE, path="/")
    return resp


async def home(request: web.Request) -> web.Response:
    return _page("support_home.html.j2", lang=_lang(request), metrics_url=request.app[K_SETTINGS].metrics_url)


async def subject_page(request: web.Request) -> web.Response:
    subject = _subject_param(request)
    lang = _lang(request)
    s = await _summary(request, subject)
    ctx = page_context(s, lang)
    ctx.pop("lang")
    ctx.pop("L")
    return _page("support_subject.html.j2", lang=lang, can_erase=bool(request.app[K_SETTINGS].support_admin_token),
                 receipt=None, **ctx)


async def export(request: web.Request) -> web.Response:
    subject = _subject_param(request)
    s = await _summary(request, subject)
    resp = web.Response(text=export_json(s), content_type="application/json", charset="utf-8")
    resp.headers["Content-Disposition"] = 'attachment; filename="subject-export.json"'
    return resp


async def erase(request: web.Request) -> web.Response:
    settings = request.app[K_SETTINGS]
    form = await request.post()
    subject = _subject_param(request, form)
    admin = settings.support_admin_token
    if not admin:
        raise web.HTTPForbidden(text="erase is disabled: PFILTER_SUPPORT_ADMIN_TOKEN is not set")
    if not hmac.compare_digest(str(form.get("admin_token", "")).encode(), admin.encode()):
        raise web.HTTPForbidden(text="wrong admin token")
    if str(form.get("confirm", "")).strip() != subject:
        raise web.HTTPBadRequest(text="type the subject id again to confirm the erasure")
    loop = asyncio.get_running_loop()
    try:
        receipt = await loop.run_in_executor(None, request.app[K_ERASE], settings, subject)
    except PFilterError as exc:
        raise web.HTTPServiceUnavailable(text=str(exc)) from None
    return _page("support_erased.html.j2", subject=subject, receipt=receipt)


async def overview(request: web.Request) -> web.Response:
    settings = request.app[K_SETTINGS]
    try:
        async with httpx.AsyncClient(timeout=_METRICS_TIMEOUT_S) as client:
            r = await client.get(settings.metrics_url)
            r.raise_for_status()
    except httpx.HTTPError:
        return web.json_response({"ok": False, "error": "worker metrics unreachable"})
    now = parse_metrics(r.text)
    t = time.monotonic()
    prev = request.app[K_PREV].get("last")
    request.app[K_PREV]["last"] = (t, now["events_in_total"])
    return web.json_response({"ok": True, **with_rate(now, t, prev)})


def make_app(settings: Settings, *, load: Loader | None = None, erase_fn: Eraser | None = None) -> web.Application:
    """The support app (``load`` / ``erase_fn``: the Kafka-backed defaults unless given)."""
    if load is None:
        from streams.transparency.sources import load_summary as load
    if erase_fn is None:
        from streams.transparency.erase import erase_subject as erase_fn
    app = web.Application(middlewares=[_guard], client_max_size=64 * 1024)
    app[K_SETTINGS] = settings
    app[K_LOAD] = load
    app[K_ERASE] = erase_fn
    app[K_PREV] = {}
    app.add_routes([
        web.get("/login", login_form), web.post("/login", login), web.post("/logout", logout),
        web.get("/", home), web.get("/subject", subject_page), web.get("/subject/export.json", export),
        web.post("/subject/erase", erase), web.get("/api/overview", overview),
    ])
    return app


__all__ = ["make_app", "session_value", "export_dict"]
