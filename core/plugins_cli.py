"""``fhirhub plugins`` (what is installed and enabled) and ``fhirhub plugin new NAME``
(a new plugin package whose tests pass as generated)."""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from typing import Annotated

import typer

TEMPLATE = Path(__file__).parent / "scaffold" / "template"
plugin_app = typer.Typer(help="Write and manage fhirhub plugins", no_args_is_help=True)


def list_plugins() -> None:
    """List plugins: name, version, source, state and the hooks each implements."""
    from fhirhub.core.plugins import make_plugin_manager, plugin_infos
    from fhirhub.core.settings import load_settings

    pm = make_plugin_manager(load_settings())
    for info in plugin_infos(pm):
        state = "enabled" if info.enabled else f"disabled{': ' + info.error if info.error else ''}"
        typer.echo(f"{info.name} {info.version or '-'} [{info.source}] {state}")
        if info.hooks:
            typer.echo(f"    hooks: {', '.join(info.hooks)}")
        if info.resource_types or info.scopes:
            typer.echo(
                f"    needs: resource types {', '.join(info.resource_types) or '-'}; "
                f"scopes {', '.join(info.scopes) or '-'}"
            )


def _names(name: str) -> dict[str, str]:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    module = slug.replace("-", "_")
    if not slug or not module.isidentifier() or keyword.iskeyword(module):
        raise typer.BadParameter(f"{name!r} does not make a valid plugin name")
    return {
        "name": slug,
        "module": f"fhirhub_{module}",
        "operation": slug.replace("-", ""),
        "title": slug.replace("-", " ").title(),
    }


@plugin_app.command("new")
def new_plugin(
    name: Annotated[str, typer.Argument(help="Plugin name, e.g. 'bed-board'")],
    directory: Annotated[Path, typer.Option(help="Where to create the package folder")] = Path("."),
) -> None:
    """Create an installable plugin package (entry point, route, operation, hook, tests)."""
    names = _names(name)
    target = directory / f"fhirhub-{names['name']}"
    if target.exists():
        typer.echo(f"{target} already exists", err=True)
        raise typer.Exit(1)
    for source in sorted(TEMPLATE.rglob("*.tmpl")):
        relative = str(source.relative_to(TEMPLATE))[: -len(".tmpl")]
        relative = relative.replace("MODULE", names["module"])
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text()
        for key, value in names.items():
            text = text.replace("{{" + key + "}}", value)
        destination.write_text(text)
    typer.echo(f"Created {target}. Next: pip install -e {target} && pytest {target}")
