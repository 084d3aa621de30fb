"""The `scaling` command: its arguments, parsed. Bad input exits 2 with one line naming the file
and the field; what each command then does is in `commands.py`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from scaling import commands
from scaling.contract import NoSuchExperiment
from scaling.errors import InputError, UsageError

USAGE_ERROR = 2
# Defaults the command sets unless the user has: MLflow and Ray read some of them on import,
# so they are set before either is imported.
ENVIRONMENT = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    # MLflow sets its own log level on import; its INFO lines ("creating tables") are noise.
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    # Download progress bars on stderr would bury the one-line errors the CLI promises, and a
    # "View run" link per run on stdout would break the progress table.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # Tune's own console output would fight the progress table; errors still reach callbacks.
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


# ---------------------------------------------------------------------------------------------


def _csv_columns(parser: argparse.ArgumentParser) -> None:
    """The options that say which columns of a CSV of results hold what."""
    parser.add_argument("--params-col", default="params", help="parameters N (default: params)")
    parser.add_argument(
        "--tokens-col", default="tokens", help="training tokens D (default: tokens)"
    )
    parser.add_argument(
        "--flops-col",
        default="flops",
        help="training FLOPs C, for D = C / 6N when there is no tokens column",
    )
    parser.add_argument("--loss-col", default="loss", help="final loss (default: loss)")
    parser.add_argument(
        "--drop-highest-loss",
        type=int,
        default=0,
        help="leave out the K highest-loss rows (the replication drops 5)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="scaling", description=__doc__)
    subcommands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    uri_help = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)"
    job_help = "the cluster's job server (default: $RAY_ADDRESS if http://..., else 127.0.0.1:8265)"

    plan = subcommands.add_parser("plan", help="validate a spec and list its trials")
    plan.add_argument("spec")
    plan.add_argument("--json", action="store_true", help="print the trials as JSON")
    plan.add_argument(
        "--device",
        default="here",
        help="estimate for this machine (here, measured) or a GPU by name (H100, A100, ...)",
    )
    plan.add_argument(
        "--mfu", type=float, default=0.4, help="MFU assumed for a named GPU (default 0.4)"
    )
    plan.set_defaults(func=commands.plan)

    run = subcommands.add_parser("run", help="run a grid and record it in MLflow")
    run.add_argument("spec")
    run.add_argument("--tracking-uri", help=uri_help)
    run.add_argument(
        "--storage",
        default="scaling_runs",
        help="where Ray keeps trial checkpoints: a path, or s3:// / gs:// on a multi-host cluster",
    )
    run.add_argument(
        "--address",
        help="a Ray cluster to join (default: $RAY_ADDRESS, else start Ray in this process)",
    )
    run.add_argument(
        "--max-concurrent",
        type=int,
        help="trials at once (default: as resources allow, or the spec's resources.max_concurrent)",
    )
    run.add_argument("--quiet", action="store_true", help="plain progress lines, no live table")
    run.add_argument(
        "--spool",
        default="scaling_spool",
        help="where MLflow writes wait while the tracking store does not answer",
    )
    run.add_argument(
        "--sync-timeout",
        type=float,
        default=600,
        help="how long the grid's end waits for a tracking store that does not answer before "
        "exiting 3 with the writes kept in the spool (default 600 s)",
    )
    run.set_defaults(func=commands.run)

    sync = subcommands.add_parser(
        "sync", help="replay the MLflow writes a grid left in its spool (after an exit 3)"
    )
    sync.add_argument("spool", help="the spool folder the grid named")
    sync.add_argument(
        "--tracking-uri",
        help="replay into this store instead of the grid's own (every write, from the first)",
    )
    sync.add_argument(
        "--timeout", type=float, default=600, help="how long to wait for the store (default 600 s)"
    )
    sync.set_defaults(func=commands.sync)

    submit = subcommands.add_parser(
        "submit", help="submit a grid to a Ray cluster as a job, and return at once"
    )
    submit.add_argument("spec")
    submit.add_argument("--address", help=job_help)
    submit.add_argument(
        "--tracking-uri",
        help="the tracking server the head writes to (default: $MLFLOW_TRACKING_URI)",
    )
    submit.add_argument(
        "--storage",
        default="~/scaling_runs",
        help="checkpoints and resume points, as the head's driver names them: s3://... on a "
        "multi-host cluster (default: ~/scaling_runs on the head)",
    )
    submit.add_argument(
        "--spool", default="~/scaling_spool", help="the head's spool (default: ~/scaling_spool)"
    )
    submit.add_argument("--max-concurrent", type=int, help="trials at once")
    submit.add_argument("--sync-timeout", type=float, default=600, help="as for `scaling run`")
    submit.set_defaults(func=commands.submit)

    jobs = subcommands.add_parser("jobs", help="the jobs a Ray cluster holds, with their status")
    jobs.add_argument("--address", help=job_help)
    jobs.set_defaults(func=commands.jobs_list)

    logs = subcommands.add_parser("logs", help="a submitted grid's log")
    logs.add_argument("job", help="the job id `scaling submit` printed")
    logs.add_argument("--address", help=job_help)
    logs.add_argument("--follow", action="store_true", help="print as it grows, until it ends")
    logs.set_defaults(func=commands.logs)

    stop = subcommands.add_parser(
        "stop", help="stop a submitted grid as Ctrl-C would: finished trials are kept"
    )
    stop.add_argument("job", help="the job id `scaling submit` printed")
    stop.add_argument("--address", help=job_help)
    stop.set_defaults(func=commands.stop)

    status = subcommands.add_parser("status", help="an experiment's trials by status")
    status.add_argument("experiment")
    status.add_argument("--tracking-uri", help=uri_help)
    status.set_defaults(func=commands.status)

    fit = subcommands.add_parser("fit", help="fit the Chinchilla law to a CSV of runs")
    fit.add_argument("csv")
    _csv_columns(fit)
    fit.add_argument("--bootstrap", type=int, default=1000, help="resamples for the intervals")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--out", default="fits.json", help="where to write the fit as JSON")
    fit.set_defaults(func=commands.fit)

    report = subcommands.add_parser(
        "report", help="fit a grid's runs (or a CSV of results) and write the scaling report"
    )
    report.add_argument("experiment", nargs="?", help="the experiment in MLflow")
    report.add_argument("--csv", help="a CSV of final results instead (see the column options)")
    _csv_columns(report)
    report.add_argument("--tracking-uri", help=uri_help)
    report.add_argument("--out", default="report", help="the report's folder (default: report)")
    report.add_argument(
        "--budgets",
        default="1e18,1e20,1e22",
        help="FLOP budgets to predict N_opt, D_opt, loss and GPU-hours for",
    )
    report.add_argument(
        "--target-flops",
        help="also write next_run.yaml: a spec for the compute-optimal run at these FLOPs",
    )
    report.add_argument("--gpu", default="H100", help="the GPU the GPU-hours are for")
    report.add_argument("--mfu", type=float, help="MFU for GPU-hours (default: the grid's own)")
    report.add_argument("--bootstrap", type=int, default=1000, help="resamples for the intervals")
    report.set_defaults(func=commands.report)

    sample = subcommands.add_parser("sample", help="generate text from a trial's checkpoint")
    sample.add_argument("run_id", help="the trial's MLflow run id (see the dashboard)")
    sample.add_argument("--tracking-uri", help=uri_help)
    sample.add_argument("--prompt", default="", help="text to continue, after BOS")
    sample.add_argument("--max-new-tokens", type=int, default=256)
    sample.add_argument("--temperature", type=float, default=0.8, help="0 decodes greedily")
    sample.add_argument("--top-k", type=int, help="sample from the k likeliest bytes only")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=commands.sample)

    ui = subcommands.add_parser("ui", help="serve the MLflow dashboard on 127.0.0.1")
    ui.add_argument("--tracking-uri", help=uri_help)
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=commands.ui)
    return parser


def configure() -> None:
    """The command's environment defaults and log levels, before anything imports MLflow or
    Ray: importing `scaling` changes neither for a program that uses it as a library."""
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    logging.getLogger("ray.tune").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    configure()
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (InputError, NoSuchExperiment) as exc:
        print(exc, file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
