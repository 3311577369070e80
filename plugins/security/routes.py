"""HTTP endpoints: SMART discovery, the authorization server (authorize, token, introspect,
revoke, JWKS), the invitation page and the UI shell's login pages.

Public (no token needed): everything here but ``introspect`` (RFC 7662 §2.1: the caller must
be authorized; here any valid bearer token of this hub) and the admin API in ``admin.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from joserfc import jwt
from joserfc.errors import JoseError
from starlette.concurrency import run_in_threadpool

from fhirhub.plugins.security import grants, throttle
from fhirhub.plugins.security.clients import (
    SHELL_CALLBACK,
    SHELL_CLIENT_ID,
    Client,
    OAuthError,
    authenticate_client,
    get_client,
)
from fhirhub.plugins.security.invitations import accept_invitation, invitation_user
from fhirhub.plugins.security.keys import ALGORITHM, ID_TOKEN_ALGORITHM, public_jwks
from fhirhub.plugins.security.launch import find_launch
from fhirhub.plugins.security.roles import ROLES, has_patient_scopes
from fhirhub.plugins.security.state import Security, now, security
from fhirhub.plugins.security.users import User, check_password, get_user
from fhirhub.sdk import Access, FhirError, acting_as

log = logging.getLogger("fhirhub.security")

HERE = Path(__file__).parent
PREFIX = "/plugins/security"
templates = Jinja2Templates(directory=HERE / "templates")

#: Login and consent pages may not be framed (clickjacking); admin pages are framed by the
#: shell. No form-action: the authorization response redirects to the client's origin.
LOGIN_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; object-src 'none'; base-uri 'self'"
)
FRAMED_CSP = LOGIN_CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
    "launch",
)
SHELL_SCOPE = "openid fhirUser user/*.cruds online_access"


def endpoints(origin: str) -> dict[str, str]:
    return {
        "authorization_endpoint": f"{origin}{PREFIX}/authorize",
        "token_endpoint": f"{origin}{PREFIX}/token",
        "introspection_endpoint": f"{origin}{PREFIX}/introspect",
        "revocation_endpoint": f"{origin}{PREFIX}/revoke",
        "jwks_uri": f"{origin}{PREFIX}/jwks",
    }


def smart_configuration(sec: Security, request: Request) -> dict[str, Any]:
    """https://hl7.org/fhir/smart-app-launch/conformance.html#metadata"""
    return {
        "issuer": sec.fhir_base(request),
        **endpoints(sec.origin(request)),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": [
            "openid",
            "fhirUser",
            "launch",
            "launch/patient",
            "offline_access",
            "online_access",
            "patient/*.rs",
            "user/*.cruds",
            "system/*.rs",
            "system/*.cruds",
        ],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": [ID_TOKEN_ALGORITHM],
        "subject_types_supported": ["public"],
        "capabilities": [
            "launch-standalone",
            "launch-ehr",
            "client-public",
            "client-confidential-asymmetric",
            "context-standalone-patient",
            "context-ehr-patient",
            "context-banner",
            "sso-openid-connect",
            "permission-offline",
            "permission-online",
            "permission-patient",
            "permission-user",
            "permission-v1",
            "permission-v2",
            "authorize-post",
        ],
    }


def audit_login(
    hub: Any,
    request: Request,
    *,
    ok: bool,
    username: str,
    status: int,
    started: float,
    user: User | None = None,
) -> None:
    """Tell ``request_completed`` consumers (the audit trail) about a login attempt."""
    remote = request.client.host if request.client else None
    access = None
    if user is not None:
        access = Access(
            subject=f"user:{user.username}",
            tenant=user.tenant,
            roles=frozenset([user.role]),
            remote=remote,
        )
    record = {
        "access": access,
        "interaction": "login" if ok else "login-failed",
        "username": username,
        "status": status,
        "remote": remote,
        "method": request.method,
        "path": request.url.path,
        "query": "",
        "resource_type": None,
        "resource_id": None,
        "started": int(started * 1_000_000),
        "duration_ms": (time.time() - started) * 1000,
    }
    try:
        hub.hook.request_completed(record=record, hub=hub)
    except Exception:  # auditing must not break a login
        log.exception("request_completed failed for a login record")


def page(
    request: Request, template: str, status: int = 200, framed: bool = False, **context: Any
) -> Response:
    root = request.scope.get("root_path", "").rstrip("/")
    response = templates.TemplateResponse(
        request,
        template,
        {"root": root, "fhir_base": f"{root}/fhir", **context},
        status_code=status,
    )
    response.headers["Content-Security-Policy"] = FRAMED_CSP if framed else LOGIN_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


def oauth_error(error: OAuthError) -> JSONResponse:
    return JSONResponse(
        {"error": error.error, "error_description": error.description},
        status_code=error.status,
        headers=NO_STORE,
    )


def router(hub: Any) -> list[APIRouter]:
    api = APIRouter(include_in_schema=False)
    root = APIRouter(include_in_schema=False)
    root.mount_at_root = True  # type: ignore[attr-defined]

    @api.get("/static/{name}")
    def static(name: str) -> Response:
        """The plugin's few static files (a route: mounts are not carried by include_router)."""
        path = HERE / "static" / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise FhirError(404, f"No static file {name!r}", code="not-found")
        media = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(path.read_bytes(), media_type=media, headers={"Cache-Control": "no-cache"})

    def sec() -> Security:
        return security(hub)

    # -- discovery ---------------------------------------------------------------------------
    @root.get("/fhir/.well-known/smart-configuration")
    def smart_config(request: Request) -> JSONResponse:
        return JSONResponse(smart_configuration(sec(), request))

    @root.get("/fhir/.well-known/openid-configuration")
    def openid_config(request: Request) -> JSONResponse:
        return JSONResponse(smart_configuration(sec(), request))

    @api.get("/jwks")
    def jwks() -> JSONResponse:
        state = sec()
        return JSONResponse(public_jwks(state.key, state.id_key))

    # -- authorize ---------------------------------------------------------------------------
    def check_authorize(request: Request, params: dict[str, str]) -> tuple[Client, str] | Response:
        """Validate an authorization request: the client and redirect URI first (errors shown
        here, never redirected: RFC 6749 §4.1.2.1), then the rest (errors redirected)."""
        state = sec()
        client = get_client(state, params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        if client is None:
            return page(
                request, "message.html", 400, title="Sign-in failed", message="Unknown client_id."
            )
        if not client.redirect_allowed(redirect_uri, state.origin(request)):
            return page(
                request,
                "message.html",
                400,
                title="Sign-in failed",
                message="The redirect_uri is not registered for this client.",
            )
        problem = None
        if params.get("response_type") != "code":
            problem = ("unsupported_response_type", "Only response_type=code is supported")
        elif params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            problem = ("invalid_request", "PKCE is required: code_challenge with method S256")
        elif params.get("aud") != state.fhir_base(request):
            problem = (
                "invalid_request",
                f"aud must be this FHIR server: {state.fhir_base(request)}",
            )
        elif not params.get("state"):
            problem = ("invalid_request", "state is required")
        elif any("?" in word for word in params.get("scope", "").split()):
            # SMART v2 granular scopes: refused rather than granted as the whole type.
            problem = (
                "invalid_scope",
                "Scopes with query parameters (SMART v2 granular scopes) are not supported; "
                "ask for the resource type without them",
            )
        elif "launch" in params.get("scope", "").split() and not params.get("launch"):
            problem = ("invalid_request", "The launch scope needs the EHR's launch parameter")
        elif params.get("launch") and find_launch(state, params["launch"]) is None:
            problem = ("invalid_request", "The launch parameter is unknown or expired")
        if problem is not None:
            return redirect_error(redirect_uri, params.get("state"), *problem)
        return client, redirect_uri

    def redirect_error(redirect_uri: str, state: str | None, error: str, text: str) -> Response:
        query = {"error": error, "error_description": text}
        if state:
            query["state"] = state
        return RedirectResponse(
            f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(query)}", 302
        )

    def redirect_code(redirect_uri: str, state: str, code: str) -> Response:
        query = urlencode({"code": code, "state": state})
        return RedirectResponse(f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}", 302)

    @api.get("/authorize")
    def authorize(request: Request) -> Response:
        params = {k: v for k, v in request.query_params.items() if k in AUTHORIZE_PARAMS}
        checked = check_authorize(request, params)
        if isinstance(checked, Response):
            return checked
        client, _ = checked
        return login_form(request, client, params)

    def login_form(
        request: Request,
        client: Client,
        params: dict[str, str],
        status: int = 200,
        username: str = "",
        error: str | None = None,
    ) -> Response:
        return page(
            request,
            "authorize.html",
            status,
            title="Sign in",
            client=client,
            params=params,
            scopes=params.get("scope", "").split(),
            username=username,
            error=error,
        )

    @api.post("/authorize")
    async def authorize_post(request: Request) -> Response:
        started = time.time()
        form = {k: str(v) for k, v in (await request.form()).items()}
        params = {k: v for k, v in form.items() if k in AUTHORIZE_PARAMS}
        checked = await run_in_threadpool(check_authorize, request, params)
        if isinstance(checked, Response):
            return checked
        client, redirect_uri = checked
        if not {"username", "password", "decision"} & form.keys():
            # SMART ``authorize-post``: the authorization request itself, sent as a form. It
            # is no sign-in attempt: show the sign-in page, as for GET.
            return login_form(request, client, params)
        if form.get("decision") == "deny":
            return redirect_error(
                redirect_uri, params["state"], "access_denied", "The user denied access"
            )
        username = form.get("username", "").strip()
        remote = request.client.host if request.client else None
        state = sec()
        # Database work and password hashing (argon2, tens of milliseconds of CPU) run in
        # worker threads: a burst of failed sign-ins must not stall the event loop.
        wait = await run_in_threadpool(throttle.locked_for, state, username, remote)
        if wait > 0:
            audit_login(hub, request, ok=False, username=username, status=429, started=started)
            return login_form(
                request,
                client,
                params,
                429,
                username,
                f"Too many failed sign-ins. Try again in {wait} seconds.",
            )
        async with hashing_slots():
            user = await run_in_threadpool(
                check_password, state, username, form.get("password", "")
            )
        if user is None:
            await run_in_threadpool(throttle.record_failure, state, username, remote)
            audit_login(hub, request, ok=False, username=username, status=401, started=started)
            return login_form(
                request, client, params, 401, username, "Wrong user name or password."
            )
        await run_in_threadpool(throttle.record_success, state, username)
        audit_login(
            hub, request, ok=True, username=username, status=302, started=started, user=user
        )
        return await run_in_threadpool(after_sign_in, request, client, user, params)

    def after_sign_in(
        request: Request, client: Client, user: User, params: dict[str, str]
    ) -> Response:
        """Establish the patient context, then answer with the code: an EHR launch's patient,
        a patient user's own record, or the picker for anyone else whose scopes need a
        patient (SMART: patient-level scopes are never granted without one)."""
        state = sec()
        requested = params.get("scope", "")
        scope = grants.user_scope(user, requested)
        redirect_uri = params["redirect_uri"]
        patient: str | None = None
        if params.get("launch") and user.role != "patient":
            launch = find_launch(state, params["launch"])
            if launch is None or not user_may_read_patient(user, launch.patient, launch.tenant):
                return redirect_error(
                    redirect_uri,
                    params["state"],
                    "invalid_request",
                    "The launch context is unknown, expired or not visible to this user",
                )
            patient = launch.patient
        elif user.role != "patient" and (
            "launch/patient" in requested.split() or has_patient_scopes(scope)
        ):
            ticket = jwt.encode(
                {"alg": ALGORITHM, "kid": state.key.kid},
                {"typ": "patient-picker", "sub": user.id, "params": params, "exp": now() + 600},
                state.key,
                algorithms=[ALGORITHM],
            )
            return picker(request, client, user, ticket, "")
        code = grants.issue_code(
            state,
            client=client,
            redirect_uri=redirect_uri,
            user=user,
            scope=scope,
            patient=patient,
            code_challenge=params["code_challenge"],
        )
        return redirect_code(redirect_uri, params["state"], code)

    def user_may_read_patient(user: User, patient: str, tenant: str | None) -> bool:
        """Whether ``user`` sees Patient ``patient`` (of the launch's ``tenant``)."""
        from fhirhub.sdk import read

        if ROLES[user.role].tenant_bound and tenant is not None and user.tenant != tenant:
            return False
        with acting_as(user_access(user)):
            try:
                read(hub, "Patient", patient)
            except FhirError:
                return False
        return True

    # -- the patient picker (launch/patient for users who are not the patient) ----------------
    def user_access(user: User) -> Access:
        tenant = user.tenant if ROLES[user.role].tenant_bound else None
        from fhirhub.sdk import parse_scopes

        return Access(
            subject=f"user:{user.username}",
            tenant=tenant,
            roles=frozenset([user.role]),
            scopes=parse_scopes(" ".join(ROLES[user.role].allowed)),
        )

    def picker(request: Request, client: Client, user: User, ticket: str, q: str) -> Response:
        from fhirhub.sdk import search

        query = {"_count": "50", "_sort": "family"}
        if q:
            query["name"] = q
        with acting_as(user_access(user)):
            try:
                found = search(hub, "Patient", query)
            except FhirError:
                found = []
        patients = [
            {"id": p.get("id"), "name": _name(p), "birthDate": p.get("birthDate", "")}
            for p in found
        ]
        return page(
            request,
            "patient_picker.html",
            title="Choose a patient",
            client=client,
            ticket=ticket,
            patients=patients,
            q=q,
        )

    def read_ticket(ticket: str) -> tuple[dict[str, str], User, Client]:
        state = sec()
        try:
            claims = dict(jwt.decode(ticket, state.key, algorithms=[ALGORITHM]).claims)
        except (JoseError, ValueError) as exc:
            raise FhirError(400, "Invalid sign-in ticket; sign in again") from exc
        if claims.get("typ") != "patient-picker" or claims.get("exp", 0) < now():
            raise FhirError(400, "The sign-in ticket has expired; sign in again")
        user = get_user(state, str(claims.get("sub")))
        client = get_client(state, claims["params"].get("client_id", ""))
        if user is None or user.disabled or client is None:
            raise FhirError(400, "Sign in again")
        return claims["params"], user, client

    @api.get("/authorize/patient")
    def picker_search(request: Request, ticket: str = "", q: str = "") -> Response:
        _params, user, client = read_ticket(ticket)
        return picker(request, client, user, ticket, q)

    @api.post("/authorize/patient")
    async def picker_choose(request: Request) -> Response:
        from fhirhub.sdk import read

        form = {k: str(v) for k, v in (await request.form()).items()}
        params, user, client = read_ticket(form.get("ticket", ""))
        patient = form.get("patient", "")
        with acting_as(user_access(user)):
            try:
                read(hub, "Patient", patient)
            except FhirError:
                return picker(request, client, user, form.get("ticket", ""), "")
        code = grants.issue_code(
            sec(),
            client=client,
            redirect_uri=params["redirect_uri"],
            user=user,
            scope=grants.user_scope(user, params.get("scope", "")),
            patient=patient,
            code_challenge=params["code_challenge"],
        )
        return redirect_code(params["redirect_uri"], params["state"], code)

    # -- token, introspection, revocation ----------------------------------------------------
    @api.post("/token")
    async def token(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        state = sec()
        audience = state.fhir_base(request)
        token_endpoint = endpoints(state.origin(request))["token_endpoint"]
        grant_type = form.get("grant_type")
        if (
            grant_type == "refresh_token"
            and not form.get("client_id")
            and not form.get("client_assertion")
        ):
            # A public client's refresh (fhirclient.js sends no client_id): the refresh token
            # names its client; a confidential one must still authenticate.
            form["client_id"] = grants.refresh_token_client(state, form.get("refresh_token", ""))
        try:
            client = authenticate_client(state, form, token_endpoint)
            if grant_type == "authorization_code":
                answer = grants.exchange_code(state, client, form, audience)
            elif grant_type == "refresh_token":
                answer = grants.refresh(state, client, form, audience)
            elif grant_type == "client_credentials":
                answer = grants.client_credentials(state, client, form, audience)
            else:
                raise OAuthError(
                    "unsupported_grant_type", f"grant_type {grant_type!r} is not supported"
                )
        except OAuthError as error:
            return oauth_error(error)
        return JSONResponse(answer, headers=NO_STORE)

    @api.post("/introspect")
    async def introspect(request: Request) -> Response:
        form = await request.form()
        answer = grants.introspect(sec(), str(form.get("token", "")), sec().fhir_base(request))
        return JSONResponse(answer, headers=NO_STORE)

    @api.post("/revoke")
    async def revoke(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        state = sec()
        client_id: str | None = form.get("client_id")
        if form.get("client_assertion"):
            token_endpoint = endpoints(state.origin(request))["token_endpoint"]
            try:
                client_id = authenticate_client(state, form, token_endpoint).client_id
            except OAuthError as error:
                return oauth_error(error)
        grants.revoke(state, form.get("token", ""), client_id, state.fhir_base(request))
        return Response(status_code=200, headers=NO_STORE)

    # -- invitations (the token travels in the link's fragment and the form body only) ---------
    def invite_form(request: Request, status: int = 200, error: str | None = None) -> Response:
        return page(
            request,
            "invite.html",
            status,
            title="Set your password",
            min_length=sec().config.min_password_length,
            error=error,
        )

    @api.get("/invite")
    def invite_page(request: Request) -> Response:
        return invite_form(request)

    @api.post("/invite")
    async def invite_accept(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        state = sec()
        token = form.get("token", "")
        user_id = await run_in_threadpool(invitation_user, state, token) if token else None
        user = await run_in_threadpool(get_user, state, user_id) if user_id else None
        if user is None:
            return page(
                request,
                "message.html",
                404,
                title="Invitation",
                message="This link is unknown, used or expired.",
            )
        if form.get("password") != form.get("repeat"):
            return invite_form(request, 400, "The two passwords differ.")
        try:
            await run_in_threadpool(accept_invitation, state, token, form.get("password", ""))
        except FhirError as exc:
            return invite_form(request, 400, exc.message)
        return page(
            request,
            "message.html",
            title="Password set",
            message=f"You can now sign in as {user.username}.",
        )

    # -- the UI shell's login (authorization code + PKCE from the browser) --------------------
    def shell_page(request: Request, script: str, next_path: str = "/") -> Response:
        state = sec()
        origin = state.origin(request)
        return page(
            request,
            "shell_login.html",
            title="Sign in",
            script=script,
            client_id=SHELL_CLIENT_ID,
            authorize=f"{origin}{PREFIX}/authorize",
            token=f"{origin}{PREFIX}/token",
            redirect_uri=f"{origin}{SHELL_CALLBACK}",
            fhir_base=state.fhir_base(request),
            scope=SHELL_SCOPE,
            next=safe_next(next_path),
        )

    @api.get("/ui/login")
    def shell_login(request: Request, next: str = "/") -> Response:
        return shell_page(request, "login.js", next)

    @api.get("/ui/callback")
    def shell_callback(request: Request) -> Response:
        return shell_page(request, "callback.js")

    return [api, root]


#: Password checks (argon2id: tens of milliseconds of CPU and 64 MiB each) running at once,
#: per event loop. The rest wait without holding a worker thread, so a burst of sign-ins
#: leaves the thread pool to other requests (``/healthz``, reads) and memory stays bounded.
MAX_CONCURRENT_HASHING = max(2, os.cpu_count() or 2)
_hashing: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def hashing_slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _hashing.get(loop)
    if slots is None:
        slots = _hashing[loop] = asyncio.Semaphore(MAX_CONCURRENT_HASHING)
    return slots


def safe_next(value: str) -> str:
    """Where to go after the UI shell's sign-in: a path on this origin, else ``/``. Browsers
    read ``/\\host`` and ``/<tab>/host`` (tabs and newlines are dropped) as ``//host``, another
    origin, so a backslash, whitespace or control character anywhere, also percent-encoded
    (``/%09/host``), sends to ``/``."""
    for text in (value, unquote(value)):
        if not text.startswith("/") or text.startswith("//"):
            return "/"
        if any(c == "\\" or c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
            return "/"
        parts = urlsplit(text)
        if parts.scheme or parts.netloc:
            return "/"
    return value


def _name(patient: dict[str, Any]) -> str:
    names = patient.get("name") or []
    if not names:
        return "(no name)"
    name = names[0]
    if name.get("text"):
        return str(name["text"])
    return " ".join([*name.get("given", []), name.get("family", "")]).strip() or "(no name)"
