"""``fhirhub users ...``, ``fhirhub clients ...`` and ``fhirhub tenants ...``.

They run in-process on the configured database as the system (a shell on the server is
already trusted with everything), so they also bootstrap a hub: the first organization, its
org_admin, backend clients for all tenants.
"""

from __future__ import annotations

import atexit
import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

users_app = typer.Typer(
    help="Manage users (roles, tenants, invitations, passwords)", no_args_is_help=True
)
clients_app = typer.Typer(help="Manage registered client applications", no_args_is_help=True)
tenants_app = typer.Typer(help="Manage tenants (Organizations)", no_args_is_help=True)


def _hub() -> Any:
    """A hub for one command (listeners off), closed when the process exits."""
    from fhirhub.sdk import command_hub

    return _COMMAND_HUBS.enter_context(command_hub())


_COMMAND_HUBS = contextlib.ExitStack()
atexit.register(_COMMAND_HUBS.close)


def _sec(hub: Any) -> Any:
    from fhirhub.plugins.security.state import security

    return security(hub)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"Error: {getattr(exc, 'message', exc)}", err=True)
    return typer.Exit(1)


def _origin(hub: Any) -> str:
    return str(_sec(hub).origin())


@users_app.command("add")
def users_add(
    username: str,
    role: Annotated[
        str, typer.Option(help="super_admin, app_admin, org_admin, clinician, patient")
    ],
    tenant: Annotated[
        str | None, typer.Option(help="Organization id (not for super_admin/app_admin)")
    ] = None,
    email: Annotated[str | None, typer.Option(help="Email address")] = None,
    patient: Annotated[
        str | None, typer.Option(help="The user's Patient id (patient role)")
    ] = None,
    fhir_user: Annotated[
        str | None, typer.Option("--fhir-user", help="e.g. Practitioner/123")
    ] = None,
    password: Annotated[
        str | None, typer.Option(help="Set a password (else: prompt; --invite to email a link)")
    ] = None,
    invite_user: Annotated[
        bool, typer.Option("--invite", help="Email a link to set the password")
    ] = False,
) -> None:
    """Add a user."""
    from fhirhub.plugins.security.invitations import invite
    from fhirhub.plugins.security.tenants import tenant_exists
    from fhirhub.plugins.security.users import create_user
    from fhirhub.sdk import FhirError

    if password is None and not invite_user:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    hub = _hub()
    try:
        if tenant and not tenant_exists(hub, tenant):
            raise FhirError(
                400, f"There is no organization {tenant!r}; fhirhub tenants add {tenant} NAME"
            )
        user = create_user(
            _sec(hub),
            username,
            role=role,
            tenant=tenant,
            email=email,
            password=password,
            patient=patient,
            fhir_user=fhir_user,
        )
        if invite_user:
            invitation = invite(_sec(hub), user, _origin(hub))
            if not invitation.emailed:
                typer.echo(f"No email sent (no SMTP); give {username} this link: {invitation.link}")
    except FhirError as exc:
        raise _fail(exc) from exc
    typer.echo(
        f"User {user.username} ({user.role}{', ' + user.tenant if user.tenant else ''}) added"
    )


@users_app.command("invite")
def users_invite(
    username: str,
    email: Annotated[str, typer.Option(help="Where the invitation goes")],
    role: Annotated[
        str, typer.Option(help="super_admin, app_admin, org_admin, clinician, patient")
    ],
    tenant: Annotated[str | None, typer.Option(help="Organization id")] = None,
    patient: Annotated[
        str | None, typer.Option(help="The user's Patient id (patient role)")
    ] = None,
) -> None:
    """Create a user without a password and email a one-time link to set one."""
    users_add(
        username,
        role=role,
        tenant=tenant,
        email=email,
        patient=patient,
        fhir_user=None,
        password=None,
        invite_user=True,
    )


@users_app.command("list")
def users_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None) -> None:
    """List users."""
    from fhirhub.plugins.security.users import list_users

    for user in list_users(_sec(_hub()), tenant):
        state = "disabled" if user.disabled else ("active" if user.has_password else "invited")
        typer.echo(
            f"{user.username}\t{user.role}\t{user.tenant or '-'}\t{user.email or '-'}\t{state}"
        )


@users_app.command("disable")
def users_disable(
    username: str, enable: Annotated[bool, typer.Option(help="Enable instead")] = False
) -> None:
    """Disable a user (its tokens stop working at once)."""
    from fhirhub.plugins.security.users import find_user, set_disabled

    sec = _sec(_hub())
    user = find_user(sec, username)
    if user is None:
        typer.echo(f"No user {username!r}", err=True)
        raise typer.Exit(1)
    set_disabled(sec, user.id, not enable)
    typer.echo(f"User {username} {'enabled' if enable else 'disabled'}")


@users_app.command("set-password")
def users_set_password(
    username: str,
    password: Annotated[str | None, typer.Option(help="The new password (else: prompt)")] = None,
) -> None:
    """Set a user's password."""
    from fhirhub.plugins.security.users import find_user, set_password
    from fhirhub.sdk import FhirError

    sec = _sec(_hub())
    user = find_user(sec, username)
    if user is None:
        typer.echo(f"No user {username!r}", err=True)
        raise typer.Exit(1)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        set_password(sec, user.id, password)
    except FhirError as exc:
        raise _fail(exc) from exc
    typer.echo(f"Password of {username} set")


@clients_app.command("add")
def clients_add(
    client_id: str,
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    public: Annotated[
        bool, typer.Option("--public", help="A public client (PKCE, no secret)")
    ] = False,
    redirect_uri: Annotated[
        list[str] | None, typer.Option("--redirect-uri", help="Allowed redirect URI (repeatable)")
    ] = None,
    scopes: Annotated[str, typer.Option(help="Scopes it may be granted, e.g. 'system/*.rs'")] = "",
    jwks_file: Annotated[
        Path | None, typer.Option("--jwks-file", help="Its public JWKS (JSON file)")
    ] = None,
    jwks_url: Annotated[
        str | None, typer.Option("--jwks-url", help="Where its JWKS is published")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Backend services: the Organization it acts for")
    ] = None,
    all_tenants: Annotated[
        bool, typer.Option("--all-tenants", help="Backend services acting for every tenant")
    ] = False,
) -> None:
    """Register a client application."""
    from fhirhub.plugins.security.clients import register_client
    from fhirhub.sdk import FhirError

    jwks = json.loads(jwks_file.read_text()) if jwks_file else None
    try:
        client = register_client(
            _sec(_hub()),
            client_id,
            name=name,
            public=public,
            redirect_uris=redirect_uri or [],
            scopes=scopes,
            jwks=jwks,
            jwks_url=jwks_url,
            tenant=tenant,
            all_tenants=all_tenants,
        )
    except (FhirError, ValueError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"Client {client.client_id} registered")


@clients_app.command("list")
def clients_list() -> None:
    """List registered clients."""
    from fhirhub.plugins.security.clients import list_clients

    for client in list_clients(_sec(_hub())):
        kind = "public" if client.public else "confidential"
        scope = "all tenants" if client.all_tenants else (client.tenant or "-")
        typer.echo(f"{client.client_id}\t{kind}\t{client.scopes or '-'}\t{scope}")


@clients_app.command("remove")
def clients_remove(client_id: str) -> None:
    """Remove a client (its access tokens stop working at once)."""
    from fhirhub.plugins.security.clients import remove_client

    if not remove_client(_sec(_hub()), client_id):
        typer.echo(f"No client {client_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"Client {client_id} removed")


@tenants_app.command("add")
def tenants_add(tenant_id: str, name: str) -> None:
    """Create a tenant: an Organization with this id, labelled as its own tenant."""
    from fhirhub.plugins.security.tenants import create_tenant
    from fhirhub.sdk import FhirError

    try:
        create_tenant(_hub(), tenant_id, name)
    except FhirError as exc:
        raise _fail(exc) from exc
    typer.echo(f"Organization/{tenant_id} ({name}) created")


@tenants_app.command("list")
def tenants_list() -> None:
    """List tenants."""
    from fhirhub.plugins.security.tenants import list_tenants

    for tenant in list_tenants(_hub()):
        typer.echo(f"{tenant['id']}\t{tenant['name']}")


def add_commands(cli: Any) -> None:
    cli.add_typer(users_app, name="users")
    cli.add_typer(clients_app, name="clients")
    cli.add_typer(tenants_app, name="tenants")
