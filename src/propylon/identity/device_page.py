"""The verification page of the device-code flow (RFC 8628 §3.3): ``GET|POST /device``.

The user types the code their device showed, their user name and password, and approves (or
declines) the sign-in. The page says which application asked and for which resource, so that
a code relayed by a phisher is recognisable, and it is hardened as a login page should be: no
framing (``frame-ancestors 'none'``, ``X-Frame-Options``), no scripts, forms post only to
itself, nothing cached, every value HTML-escaped. Attempts go through the same throttle and
audit log as the token endpoint; a wrong code counts as a failure of the address.
"""

from __future__ import annotations

import html
from importlib import resources
from string import Template

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from propylon.errors import OAuthError
from propylon.identity.audit import SignInEvent
from propylon.identity.device_flow import DeviceAuthorization
from propylon.identity.directory import DirectoryObject
from propylon.identity.provider import IdentityProvider

__all__ = ["router"]

_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: Names of the well-known public clients, shown on the page.
_CLIENT_NAMES = {
    "04b07795-8ddb-461a-bbee-02f9e1bf7b46": "Microsoft Azure CLI (propylon)",
    "1950a258-227b-4e31-a9cf-717495945fc2": "Microsoft Azure PowerShell",
    "aebc6443-996d-45c2-90f0-388ff96faa56": "Visual Studio Code",
}
_MAX_FIELD = 512


def router() -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    routes.add_api_route("/device", _show, methods=["GET"])
    routes.add_api_route("/device", _submit, methods=["POST"])
    return routes


def _template() -> Template:
    text = resources.files("propylon.identity").joinpath("templates/device.html").read_text()
    return Template(text)


def _page(
    *,
    title: str,
    message: str = "",
    kind: str = "error",
    code: str = "",
    username: str = "",
    form: bool = True,
    status: int = 200,
) -> HTMLResponse:
    notice = f'<div class="message {kind}">{html.escape(message)}</div>' if message else ""
    body = ""
    if form:
        body = (
            '<form method="post" action="/device" autocomplete="off">'
            '<label for="user_code">Code</label>'
            f'<input id="user_code" name="user_code" value="{html.escape(code)}" '
            'required maxlength="16" autofocus>'
            '<label for="username">User name</label>'
            f'<input id="username" name="username" value="{html.escape(username)}" '
            'required maxlength="256" autocomplete="username" placeholder="someone@example.com">'
            '<label for="password">Password</label>'
            '<input id="password" name="password" type="password" required '
            'autocomplete="current-password">'
            '<div class="buttons">'
            '<button type="submit" name="action" value="approve">Sign in and approve</button>'
            '<button type="submit" name="action" value="deny">Decline</button>'
            "</div></form>"
        )
    page = _template().substitute(title=html.escape(title), message=notice, form=body)
    return HTMLResponse(page, status_code=status, headers=_HEADERS)


def _provider(request: Request) -> IdentityProvider:
    provider: IdentityProvider = request.app.state.ctx.services["identity"]
    return provider


async def _show(request: Request) -> Response:
    code = request.query_params.get("code", "")[:_MAX_FIELD]
    return _page(title="Enter code", code=code)


async def _submit(request: Request) -> Response:
    form = await request.form()
    fields = {
        name: value[:_MAX_FIELD] if isinstance(value, str) else "" for name, value in form.items()
    }
    return await run_in_threadpool(
        _decide,
        _provider(request),
        fields,
        request.client.host if request.client else None,
        getattr(request.state, "request_id", None),
    )


def _decide(
    provider: IdentityProvider,
    fields: dict[str, str],
    address: str | None,
    request_id: str | None,
) -> HTMLResponse:
    signed_in = _sign_in(provider, fields, address, request_id)
    if isinstance(signed_in, HTMLResponse):
        return signed_in
    pending, user = signed_in
    code, username = fields.get("user_code", "").strip(), fields.get("username", "").strip()
    client = _client_name(provider, pending)
    if fields.get("action", "approve") == "deny":
        provider.device_flow.deny(code)
        _audit(provider, pending, username, address, request_id, "access_denied", "declined")
        return _page(
            title="Sign-in declined",
            message=f"You declined the sign-in to {client}. You can close this window.",
            kind="ok",
            form=False,
        )
    if not provider.device_flow.approve(code, user.id):
        return _page(
            title="Enter code", message="That code has just expired.", code=code, status=400
        )
    _audit(provider, pending, username, address, request_id, None, None, principal_id=user.id)
    resource = pending.scope.split()[0] if pending.scope else ""
    return _page(
        title="You're signed in",
        message=(
            f"You have signed in to {client} as {user.upn} (for {resource}). "
            "You can close this window and return to your device."
        ),
        kind="ok",
        form=False,
    )


def _sign_in(
    provider: IdentityProvider,
    fields: dict[str, str],
    address: str | None,
    request_id: str | None,
) -> tuple[DeviceAuthorization, DirectoryObject] | HTMLResponse:
    """The pending code and the user who signed in, or the page that says why not."""
    code = fields.get("user_code", "").strip()
    username = fields.get("username", "").strip()
    account = f"user:{username.lower()}" if username else None
    try:
        provider.throttle.check(account=account, address=address)
    except OAuthError as exc:
        return _page(title="Enter code", message=exc.message, code=code, status=429)
    pending = provider.device_flow.pending(code) if code else None
    if pending is None:
        provider.throttle.record(account=None, address=address, success=False)
        _audit(provider, None, username, address, request_id, "invalid_grant", "unknown code")
        return _page(
            title="Enter code",
            message="That code is not valid or has expired. Check the code and try again.",
            code=code,
            username=username,
            status=400,
        )
    directory = provider.directory
    user = directory.find_user(pending.tenant_id, username) if username else None
    valid = directory.credentials.verify_password(user, fields.get("password", ""))
    provider.throttle.record(account=account, address=address, success=valid)
    if user is None or not valid:
        _audit(provider, pending, username, address, request_id, "invalid_grant", "wrong password")
        return _page(
            title="Enter code",
            message="Your user name or password is incorrect.",
            code=code,
            username=username,
            status=401,
        )
    if not user.enabled:
        _audit(provider, pending, username, address, request_id, "invalid_grant", "disabled")
        return _page(
            title="Sign-in refused",
            message="Your account is disabled. Contact your administrator.",
            form=False,
            status=403,
        )
    return pending, user


def _client_name(provider: IdentityProvider, pending: DeviceAuthorization) -> str:
    known = _CLIENT_NAMES.get(pending.client_id.lower())
    if known is not None:
        return known
    app = provider.directory.find_client(pending.tenant_id, pending.client_id)
    return app.display_name if app is not None else pending.client_id


def _audit(
    provider: IdentityProvider,
    pending: DeviceAuthorization | None,
    username: str,
    address: str | None,
    request_id: str | None,
    error: str | None,
    reason: str | None,
    *,
    principal_id: str | None = None,
) -> None:
    provider.audit.record(
        SignInEvent(
            tenant_id=pending.tenant_id if pending else None,
            grant_type="device_code_approval",
            client_id=pending.client_id if pending else None,
            success=error is None,
            principal_id=principal_id,
            username=username[:256] or None,
            auth_method="password",
            source_address=address,
            error=error,
            reason=reason,
            request_id=request_id,
        )
    )
