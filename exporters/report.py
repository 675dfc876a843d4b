"""The summary table printed after ``mesc export``."""

from __future__ import annotations

import click


def print_summary(pkg) -> None:
    from mesc.package.describe import format_segments

    click.echo(f"wrote {pkg.root} ({len(pkg.segments)} segments, {len(pkg.exits)} exits, "
               f"{pkg.manifest.get('export_seconds', '?')} s)")
    click.echo(format_segments(pkg))
    ver = pkg.manifest.get("verification")
    if ver:
        worst = max(v["max_abs_err"] / v["scale"] for v in ver.values())
        click.echo(f"verified against PyTorch: max relative error {worst:.2e} over {len(ver)} exits")
