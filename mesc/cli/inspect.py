"""``mesc inspect``: show what a package holds."""

from __future__ import annotations

import click


@click.command("inspect")
@click.argument("package", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def inspect_cmd(package, as_json):
    """Show a package's segments, live tensors, exits and exit policy."""
    import json

    from mesc.package.describe import format_package
    from mesc.package import Package

    pkg = Package.load(package)
    if as_json:
        click.echo(json.dumps(pkg.manifest, indent=2))
    else:
        click.echo(format_package(pkg))
