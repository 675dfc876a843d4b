"""``mesc calibrate``: exits and thresholds for an accuracy or cost bound."""

from __future__ import annotations

import click

from mesc.cli.options import Real, Whole, backend_options, parse_policy_name
from mesc.policy import POLICY_KINDS


def parse_shard_option(ctx, param, value):
    """``--shard I/N`` as (I, N); a malformed one is a usage error naming the option."""
    if value is None:
        return None
    from mesc.calibration.exits.memo_shards import parse_shard
    from mesc.errors import MescError

    try:
        return parse_shard(value)
    except MescError as err:
        raise click.BadParameter(str(err)) from None


@click.command("calibrate")
@click.argument("package", type=click.Path())
@click.option("--data", "-d", required=True, type=click.Path(),
              help="Labelled calibration folder (images/ + masks/, or a Cityscapes, VOC, SBD or COCO tree).")
@click.option("--max-drop", type=Real(min=0), default=None,
              help="Minimise expected cost with mIoU >= final-exit mIoU - PP (percentage points).")
@click.option("--max-cost", default=None,
              help="Maximise mIoU with expected cost <= COST (ms when latencies are recorded, else MFLOPs), "
                   "or N% of the final-exit cost.")
@click.option("--risk", type=Real(0, 1, min_open=True, max_open=True, check="mesc.calibration.exits.risk:check_risk"),
              default=None, metavar="DELTA",
              help="With --max-drop: choose so that, with probability >= 1 - DELTA over the calibration set, the "
                   "drop on new images stays within the bound (Learn then Test; needs a few hundred images).")
@click.option("--policy", default="mess", show_default=True, callback=parse_policy_name,
              help=f"Exit policy to calibrate, one of the kinds of mesc.policy: {', '.join(POLICY_KINDS)} (a trained "
                   "kind, the learned decision network, is fitted here); '-' for '_' works too. --write compiles it "
                   "into the exit heads.")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write a JSON report here.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write the cost vs mIoU Pareto plot (PNG) here (needs mesc[plot]).")
@click.option("--write", is_flag=True, help="Store the chosen thresholds in the package manifest.")
@click.option("--resize", is_flag=True,
              help="Resize images (bilinear) to the package input; masks keep their resolution.")
@click.option("--cache", type=click.Path(dir_okay=False), default=None,
              help="Memo cache (.npz): reused when package, data and grid are unchanged; else merged from the "
                   "shards beside it (--memo-only --shard I/N), else rebuilt.")
@click.option("--latency-key", default=None, help="Which recorded latency to use (default: the first).")
@click.option("--all-exits", is_flag=True,
              help="Keep a head at every exit point (search thresholds only; where a point has candidate "
                   "heads, still choose one).")
@click.option("--th-img-steps", type=Whole(min=2), default=50, show_default=True,
              help="th_img values per exit and th_pix.")
@click.option("--compare-policies", is_flag=True, help="Also calibrate the other policies, for the report.")
@click.option("--limit", type=Whole(min=1), default=None, help="Use only the first N images.")
@click.option("--split", default=None, help="Split of a data set with splits (e.g. val); default: all.")
# defaults None: the library's own (the CLI does not import it before a command runs)
@click.option("--min-images", type=Whole(min=1), default=None,
              help="Refuse a calibration set of fewer images (default: 5).")
@click.option("--warn-images", type=Whole(min=0), default=None,
              help="Warn that thresholds overfit a calibration set of fewer images (default: 50).")
@click.option("--force", is_flag=True, help="Overwrite existing --report and --plot files.")
@click.option("--no-prune", "no_prune", is_flag=True,
              help="Search every architecture in full (the same choice, slower; the report then gives each one's best).")
@click.option("--memo-only", is_flag=True,
              help="Run the exits over the set into --cache (or one --shard of it) and stop: no search.")
@click.option("--shard", default=None, metavar="I/N", callback=parse_shard_option,
              help="With --memo-only: only shard I of N (0 <= I < N), written beside --cache; a later calibrate "
                   "with that --cache merges the N shards.")
@backend_options
def calibrate_cmd(package, data, max_drop, max_cost, risk, policy, report, plot, write, resize, cache, latency_key,
                  all_exits, th_img_steps, compare_policies, limit, split, min_images, warn_images, force, no_prune,
                  memo_only, shard, backend, device):
    """Choose exits and thresholds on a labelled set: least expected cost within an mIoU drop,
    or best mIoU within a cost. Where an exit point offers candidate heads, choose at most one."""
    if shard is not None and not memo_only:
        raise click.UsageError("--shard goes with --memo-only (a shard is part of the memo; calibrate merges them)")
    if memo_only:
        given = [o for o, v in (("--max-drop", max_drop), ("--max-cost", max_cost), ("--risk", risk),
                                ("--report", report), ("--plot", plot), ("--write", write),
                                ("--compare-policies", compare_policies), ("--no-prune", no_prune)) if v]
        if given:
            raise click.UsageError(f"--memo-only builds the memo and stops: {', '.join(given)} would do nothing")
        from mesc.calibration.exits.calibration import build_memo
        from mesc.calibration.exits.memo_shards import shard_path

        memo = build_memo(package, data, cache, shard=shard, resize=resize, limit=limit, split=split,
                          backend=backend, device=device, progress=True)
        where = cache if shard is None else shard_path(cache, *shard)
        click.echo(f"memo             {memo.n} images x {len(memo.exits)} exits"
                   + (f" (shard {shard[0]}/{shard[1]})" if shard else "")
                   + (" (reused)" if memo.meta.get("cached") else "") + f" in {where}")
        return
    from mesc.calibration.exits import calibrate, format_report

    out = calibrate(package, data, max_drop=max_drop, max_cost=max_cost, policy=policy, report=report, plot=plot,
                    write=write, resize=resize, cache=cache, latency_key=latency_key, all_exits=all_exits,
                    th_img_steps=th_img_steps, compare_policies=compare_policies, limit=limit, split=split,
                    progress=True, force=force, backend=backend, device=device, risk=risk, prune=not no_prune,
                    **{k: v for k, v in (("min_images", min_images), ("warn_images", warn_images)) if v is not None})
    click.echo(format_report(out.report))
    if report:
        click.echo(f"report           {report}")
    if plot:
        click.echo(f"plot             {plot}")
    if write:
        kept = out.report.get("chosen", {}).get("exits", [])
        off = [e for e in out.memo.exits if e not in kept]
        click.echo(f"written          {policy} policy and thresholds to {package}/mesc.json"
                   + (f"; disabled exits: {', '.join(off)}" if off else ""))
