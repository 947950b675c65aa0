"""The seed paper's experiments as pipeline stage types: ``accuracy_grid`` (Table 2) and ``leave_one_out``.

Registered into the pipeline by :mod:`tomoflow.pipeline.stages` (``STAGES`` below: the runner and the
parameters each takes); nothing in the library imports this package.
"""

from __future__ import annotations


def accuracy_grid(ctx, gp, k: dict) -> dict:
    """Seed 000 Table 2 (see :mod:`.accuracy_grid`); writes ``out`` (markdown, ours beside the paper's)."""
    from dataclasses import replace

    from .accuracy_grid import bar, markdown_table, run_grid

    gp = replace(gp, snrs=tuple(float(x) for x in gp.snrs), tilts=tuple(float(x) for x in gp.tilts))
    cells = run_grid(ctx.store, gp, ctx.out / "grid", client=ctx.client, progress=ctx.progress,
                     log=lambda m: print(f"tomoflow: {m}", flush=True))
    table = markdown_table(cells, gp.models, gp.snrs, gp.tilts)
    turned = markdown_table(cells, gp.models, gp.snrs, gp.tilts, turns=True)
    ctx.path(k["out"]).write_text(f"# Table 2 ({gp.scale} scale): ours (paper)\n\n{table}\n\n## CNNs with "
                                  f"test-time turns (mean over the 4 wedge-preserving views)\n\n{turned}\n")
    return {"cells": len(cells), "table": str(ctx.path(k["out"])), **bar(cells)}


def leave_one_out(ctx, lp, k: dict) -> dict:
    """Seed 000 section 3.3 (see :mod:`.leave_one_out`); writes ``out`` (markdown) and a PNG of slices."""
    from dataclasses import replace

    from .leave_one_out import run_leave_one_out, slices_figure

    lp = replace(lp, voxel_size=float(lp.voxel_size))  # as recorded in earlier runs' resume keys
    work = ctx.out / (f"loo-{lp.model}" if lp.features == "cnn" else f"loo-openset-{lp.model}")
    res = run_leave_one_out(ctx.store, lp, work, client=ctx.client, progress=ctx.progress,
                            log=lambda m: print(f"tomoflow: {m}", flush=True))
    png = ctx.path(k["out"]).with_suffix(".png")
    slices_figure(res, ctx.store, lp, work, png)
    under = sum(r["under_threshold"] for r in res)
    n_all = len(lp.resolved()["structures"])
    ran = f" ({len(res)} of the {n_all} structures left out so far)" if len(res) < n_all else ""
    rows = "\n".join(f"| {r['class']} | {r['cluster']} ({r['cluster_size']}) | {r['cluster_share']:.2f} | "
                      f"{r['subclass_size']} | {r['subclass_share']:.2f} | {r['discrepancy_nm']:.2f} |" for r in res)
    ctx.path(k["out"]).write_text(
        f"# Leave-one-out discovery ({lp.model}{', open-set features' if lp.features == 'openset' else ''}, "
        f"{lp.scale} scale, SNR {lp.snr:g}, +-{lp.tilt:g})\n\n"
        f"{under}/{len(res)} under {lp.threshold_nm:g} nm{ran} (paper: 16/22 Inception3D, 18/22 DSRF3D); "
        f"most enriched by the {lp.enrichment} rule.\n\n"
        "| left out | cluster (size) | share of it | class size | share of class | discrepancy (nm) |\n"
        f"|---|---|---|---|---|---|\n{rows}\n\n![slices]({png.name})\n")
    return {"classes": len(res), "under_threshold": under, "table": str(ctx.path(k["out"]))}


def _stages():
    from .accuracy_grid import GridParams
    from .leave_one_out import LeaveOneOutParams

    out = ("out", str)
    return {"accuracy_grid": (accuracy_grid, GridParams, [(*out, "table2.md", "markdown table written here")]),
            "leave_one_out": (leave_one_out, LeaveOneOutParams, [(*out, "leave_one_out.md", "markdown written here")])}


# stage type -> (runner, Params class, the stage's own keys as (name, type, default, help))
STAGES = _stages()
