"""The scaling report of an `Analysis`: report.html (self-contained), report.md, fits.json and
plots/*.png in one folder, built aside and moved into place whole, so a reader never finds
half a report.

    analysis = analyse(runs, "smoke")        # analysis.analyse: choosing and fitting
    write_report(analysis, "report")
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from analysis import curves, document, lr_plots, plots, render, sections
from analysis.analyse import Analysis


def write_report(a: Analysis, out_dir: str | Path) -> Path:
    """Write the report into `out_dir` (replacing an older one only once the new is whole)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # A plain mkdir, not mkdtemp: the report gets the permissions any folder made here gets
    # (mkdtemp's 0700 would shut out a colleague or a web server).
    staging = out_dir.with_name(f".{out_dir.name}-new-{os.getpid()}-{time.time_ns()}")
    staging.mkdir()
    try:
        plots_dir = staging / "plots"
        plots_dir.mkdir()
        lines = curves.tabulate(a)
        for name, plot in plots.PLOTS.items():
            plot(a, lines, plots_dir / name)
        if a.learning_rates is not None:
            for name, lr_plot in lr_plots.PLOTS.items():
                lr_plot(a, plots_dir / name)
        blocks = sections.report(a, lines)
        (staging / "report.md").write_text(render.markdown(blocks))
        title = f"Scaling report: {a.experiment}"
        (staging / "report.html").write_text(render.html_page(blocks, plots_dir, title))
        document.write_json(document.fits_document(a), staging / "fits.json")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}-old-{time.time_ns()}")
            out_dir.rename(old)
            staging.rename(out_dir)
            shutil.rmtree(old)
        else:
            staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir
