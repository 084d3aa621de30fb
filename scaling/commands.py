"""What each `scaling` command does: the library called with the parsed arguments, and what
it returns printed. Bad input raises UsageError, which `cli.main` prints as one line (exit 2).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from scaling import spec as spec_lib
from scaling.contract import (
    BRANCH,
    ERROR,
    GPU_PEAK_FLOPS,
    LR_PARAM,
    STATUS,
    TOKENS_PER_S,
    TRUNK,
    VAL_LOSS,
    WALL_S,
    Status,
    gpu_named,
)
from scaling.errors import UsageError

TRACKING_BEHIND = 3  # the exit code when writes still wait in a spool


def _console() -> Console:
    # Piped output keeps every column: rich would otherwise squeeze it to 80 characters.
    return Console(width=None if sys.stdout.isatty() else 200)


def _count(n: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def _seconds(s: float) -> str:
    if s == float("inf"):
        return "too big here"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def plan(args) -> int:
    spec, trials = spec_lib.load(args.spec)
    from scaling import estimate  # torch: only once the spec is known to be good

    gpu = None if args.device == "here" else gpu_named(args.device)
    if args.device != "here" and gpu is None:
        raise UsageError(
            f"--device: unknown device '{args.device}': 'here' or one of "
            + ", ".join(GPU_PEAK_FLOPS)
        )
    if gpu is not None and not 0 < args.mfu <= 1:
        raise UsageError(f"--mfu: must be a fraction in (0, 1], got {args.mfu}")
    estimates, basis = estimate.estimates(trials, gpu, args.mfu)
    if args.json:
        rows = [estimate.plan_row(t, guess) for t, guess in zip(trials, estimates)]
        print(json.dumps(rows, indent=1))
        return 0
    table = Table(
        title=f"{args.spec}: {len(trials)} trials, experiment '{spec.experiment}'",
        caption=basis,
    )
    # Under wsd, `trains` is what each run trains itself and FLOPs what it spends.
    columns = ("trial", "L/d/h", "params", "params_total", "seq_len", "tokens", "trains",
               "tokens/param", "FLOPs/token", "FLOPs", "est. time", "est. memory")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "trial" else "right")
    for t, guess in zip(trials, estimates):
        table.add_row(
            t.name,
            f"{t.n_layer}/{t.d_model}/{t.n_head}",
            _count(t.params),
            _count(t.params_total),
            str(t.seq_len),
            _count(t.tokens),
            _trains(t),
            f"{t.tokens / t.params:.3g}",
            _count(t.flops_per_token),
            f"{t.trained_flops:.3g}",
            _seconds(guess.seconds),
            f"{guess.peak_bytes / 2**30:.2f} GiB",
        )
    table.add_section()
    seconds = sum(g.seconds for g in estimates)
    table.add_row(
        "total",
        *[""] * 5,
        _count(sum(t.trained_tokens for t in trials)),
        *[""] * 2,
        f"{sum(t.trained_flops for t in trials):.3g}",
        _seconds(seconds) + " (one at a time)",
        f"max {max(g.peak_bytes for g in estimates) / 2**30:.2f} GiB",
    )
    _console().print(table)
    too_big = sum(g.seconds == float("inf") for g in estimates)
    if too_big:
        print(
            f"{too_big} of {len(trials)} trials are too big to measure on this machine: plan "
            "them on a GPU with --device, e.g. --device H100"
        )
    if spec.train.schedule == "wsd":
        twin = spec_lib.expand(spec_lib.cosine_twin(spec), args.spec)
        twin_seconds = sum(g.seconds for g in estimate.estimates(twin, gpu, args.mfu)[0])
        print(_saving(trials, twin, seconds, twin_seconds))
        # A branch holds what its trial would: the memory a grid needs does not change.
        print(
            f"memory: max {max(g.peak_bytes for g in estimates) / 2**30:.2f} GiB, as under cosine"
        )
    return 0


def _trains(trial: spec_lib.TrialSpec) -> str:
    if trial.kind == TRUNK:
        return f"trunk to {_count(trial.tokens)}"
    if trial.kind == BRANCH:
        return f"{_count(trial.trained_tokens)} from {_count(trial.branch_at)}"
    return _count(trial.tokens)


def _saving(runs: list, twin: list, seconds: float, twin_seconds: float) -> str:
    """What a WSD grid spends against the same grid under cosine, every budget from scratch."""
    spent, cosine = sum(t.trained_flops for t in runs), sum(t.flops for t in twin)
    trunks = sum(t.kind == TRUNK for t in runs)
    ratio = f" ({seconds / twin_seconds:.2f}x)" if twin_seconds < float("inf") else ""
    return (
        f"wsd: {trunks} trunks and {len(runs) - trunks} branches spend {spent:.3g} FLOPs, "
        f"{spent / cosine:.2f}x the {cosine:.3g} of the same grid under cosine; "
        f"time {_seconds(seconds)} against {_seconds(twin_seconds)}{ratio}"
    )


def run(args) -> int:
    spec, trials = spec_lib.load(args.spec)
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise UsageError(f"--max-concurrent: must be a positive integer, got {args.max_concurrent}")
    if args.sync_timeout < 0:
        raise UsageError(
            f"--sync-timeout: must be a number of seconds >= 0, got {args.sync_timeout}"
        )
    max_failures = _max_failures()
    if args.address or os.environ.get("RAY_ADDRESS"):
        _token_auth()
    # Ray, torch and MLflow only once the input is known to be good: bad input fails at once.
    from scaling import grid, jobs
    from scaling.data import prepare_for
    from scaling.progress import GridProgress
    from scaling.spool import bound_retries
    from scaling.tracking import Tracker

    bound_retries()
    tracker = Tracker(args.tracking_uri)
    tracker.check_reachable()
    spools = Path(args.spool).expanduser().resolve()
    left = _replay_left(spools, tracker, spec.experiment, args.sync_timeout)
    if left is not None:
        return TRACKING_BEHIND
    work = grid.work_left(spec, trials, tracker, args.storage)
    if not work.todo:  # before the data is prepared or Ray started: a rerun of a done grid
        n = len(work.skipped)
        print(f"nothing to run: {n} of {n} already {_done(spec)}")
        return 0
    prepare_for(spec, args.spec)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.experiment)  # Databricks names hold slashes
    spool = tracker.spool_in(spools / f"{name}-{stamp}-{os.getpid()}", spec.experiment)
    # The spec as it is now, for the grid's run: the file may change, or (in a Ray Job) go.
    (spool.folder / "spec").mkdir()
    spec_copy = Path(shutil.copy2(args.spec, spool.folder / "spec"))
    if jobs.inside_job():
        # A Ray Job's driver (`scaling submit`): Ray unpacks the job's folder again, replacing
        # this one, as the grid's workers start; nothing is read from it after this point.
        os.chdir(spools)
    trunks = sum(t.kind == TRUNK for t in trials)
    what = (
        f"{trunks} trunks and {len(trials) - trunks} branches"
        if trunks
        else f"{len(trials)} trials"
    )
    print(f"{what} of '{spec.experiment}', tracking in {tracker.tracking_uri}")
    if work.skipped:
        print(f"{len(work.skipped)} already {_done(spec)}, {len(work.todo)} to run")
    console = Console()
    live = console.is_terminal and not args.quiet
    # Only what is left: a grid rerun with more budgets counts and times only the new ones.
    progress = GridProgress(work.todo, live=live, console=console, tracking=spool.state)
    # `kill` and a Ray Job's stop without RAY_JOB_STOP_SIGNAL send SIGTERM: stop as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        outcome = grid.run_grid(
            spec,
            spec_copy,
            trials,
            tracker,
            args.storage,
            args.max_concurrent,
            address=args.address,
            callbacks=[progress],
            max_failures=max_failures,
        )
    except KeyboardInterrupt:
        outcome = None
    finally:
        progress.stop()
        caught_up = _catch_up(spool, args.sync_timeout)
        tracker.stop_beating()  # only now: until its writes are in, the grid is not done
    code = _outcome(outcome, spec, _resume_command(args, submitted=jobs.inside_job()))
    if not caught_up:
        print(_still_waiting(spool, args.sync_timeout), file=sys.stderr)
        return TRACKING_BEHIND
    return max(code, 1) if spool.rejected else code


def _resume_command(args, submitted: bool) -> str:
    if not submitted:
        uri = f" --tracking-uri {args.tracking_uri}" if args.tracking_uri else ""
        return f"scaling run {args.spec}{uri}"
    # A Ray Job's driver: the grid resumes as it started, submitted (its folder is the job's).
    spec = Path(args.spec).name
    return f"scaling submit {spec} --tracking-uri {args.tracking_uri} --storage {args.storage}"


def _done(spec: spec_lib.Spec) -> str:
    """The statuses a rerun of `spec` skips."""
    stopped = spec.search.stop_hopeless
    return f"{Status.FINISHED} or {Status.STOPPED}" if stopped else str(Status.FINISHED)


def _outcome(outcome, spec: spec_lib.Spec, resume: str) -> int:
    """Say how the grid ended; its exit code."""
    if outcome is None or outcome.interrupted:
        print(f"interrupted: finished trials are kept. Resume with: {resume}", file=sys.stderr)
        return 130
    done = _done(spec)
    if outcome.parent_run_id is None:  # an earlier driver finished the rest meanwhile
        n = len(outcome.skipped)
        print(f"nothing to run: {n} of {n} already {done}")
        return 0
    counts = Counter(outcome.statuses.values())
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    if outcome.skipped:
        skipped = f"{len(outcome.skipped)} skipped (already {done})"
        summary += (", " if summary else "") + skipped
    print(f"grid done: {summary}; parent run {outcome.parent_run_id}")
    return 0 if outcome.ok else 1


def _catch_up(spool, timeout_s: float) -> bool:
    """Wait up to `timeout_s` for the writes still waiting, and say what the store refused;
    whether it holds them all. A spool whose store holds everything is deleted."""
    if spool.waiting:
        print(
            f"waiting up to {timeout_s:.0f} s (--sync-timeout) for the tracking store to take "
            f"{len(spool.waiting)} writes",
            file=sys.stderr,
        )
    try:
        caught_up = spool.drain(timeout_s)
    except KeyboardInterrupt:
        caught_up = False
    for problem in spool.rejected:
        print(f"the tracking store refused {problem}", file=sys.stderr)
    for artifact in spool.missing:
        print(f"not in the spool: {artifact}", file=sys.stderr)
    if caught_up and not spool.rejected:
        spool.remove()
    else:
        spool.close()  # kept, for `scaling sync` or a look at what was refused
    return caught_up


def _token_auth() -> None:
    """`ray start` turns token auth on and leaves the token in ~/.ray; a client must say so
    before Ray is imported, as Ray reads its auth mode once, at import."""
    if (Path.home() / ".ray" / "auth_token").exists():
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def submit(args) -> int:
    spec, _ = spec_lib.load(args.spec)
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://", "sqlite:////")):
        raise UsageError(
            "--tracking-uri: a submitted grid is recorded from the cluster's head: name a "
            f"tracking server (http://HOST:5000) or an absolute sqlite://// path, got '{uri}'"
        )
    for flag, value in (("--storage", args.storage), ("--spool", args.spool)):
        if "://" not in value and not os.path.isabs(value) and not value.startswith("~"):
            raise UsageError(
                f"{flag}: '{value}' is relative to the job's temporary folder on the head; "
                "give an absolute path, ~/..., or a URI such as s3://bucket/prefix"
            )
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise UsageError(f"--max-concurrent: must be a positive integer, got {args.max_concurrent}")
    options = ["--tracking-uri", uri, "--storage", args.storage, "--spool", args.spool]
    options += ["--sync-timeout", str(args.sync_timeout)]
    if args.max_concurrent:
        options += ["--max-concurrent", str(args.max_concurrent)]
    _token_auth()
    from scaling import jobs

    address = jobs.job_address(args.address)
    job_id = jobs.submit(spec, Path(args.spec), address, options)
    print(job_id)
    flag = f" --address {args.address}" if args.address else ""
    print(
        f"submitted '{spec.experiment}' to {address}. Follow it with: scaling logs {job_id} "
        f"--follow{flag}; stop it with: scaling stop {job_id}{flag}",
        file=sys.stderr,
    )
    return 0


def jobs_list(args) -> int:
    _token_auth()
    from scaling import jobs

    address = jobs.job_address(args.address)
    client = jobs.connect(address)
    table = Table(title=f"jobs at {address}")
    for column in ("job", "status", "experiment", "submitted", "ended", "message"):
        table.add_column(column)
    for job in sorted(client.list_jobs(), key=lambda j: j.start_time or 0):
        table.add_row(
            job.submission_id or job.job_id,
            str(job.status.value),
            (job.metadata or {}).get(jobs.EXPERIMENT, ""),
            _clock(job.start_time),
            _clock(job.end_time),
            (job.message or "").splitlines()[0] if job.message else "",
        )
    _console().print(table)
    return 0


def _clock(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else ""


def logs(args) -> int:
    _token_auth()
    from scaling import jobs

    address = jobs.job_address(args.address)
    client = jobs.connect(address)
    jobs.known(client, args.job, address)
    if args.follow:
        status = jobs.follow(client, args.job)
        print(f"job {args.job}: {status}", file=sys.stderr)
    else:
        sys.stdout.write(client.get_job_logs(args.job))
    return 0


def stop(args) -> int:
    _token_auth()
    from scaling import jobs

    address = jobs.job_address(args.address)
    client = jobs.connect(address)
    jobs.known(client, args.job, address)
    if not client.stop_job(args.job):
        print(f"job {args.job} had already ended: {client.get_job_status(args.job).value}")
        return 0
    # The grid closes its runs (KILLED) and says how to resume; then the job ends STOPPED.
    deadline = time.monotonic() + float(jobs.STOP_ENV["RAY_JOB_STOP_WAIT_TIME_S"]) + 30
    while not client.get_job_status(args.job).is_terminal() and time.monotonic() < deadline:
        time.sleep(1)
    print(f"job {args.job}: {client.get_job_status(args.job).value}")
    return 0


def _still_waiting(spool, waited_s: float) -> str:
    return (
        f"the tracking store {spool.store} did not answer for {waited_s:.0f} s "
        f"(--sync-timeout): {len(spool.waiting)} writes wait in {spool.folder}, the trials' "
        f"results among them. Replay them with: scaling sync {spool.folder}"
    )


def _replay_left(spools: Path, tracker, experiment: str, timeout_s: float):
    """Writes an earlier driver of the experiment left waiting (it exited 3, or died while
    the store was down) reach the store first: what finished then is not trained again.
    The first spool that could not catch up, else None."""
    from scaling.spool import Spool, SpoolError, left_behind

    for folder in left_behind(spools, experiment, tracker.tracking_uri):
        try:
            spool = Spool(folder, tracker.client, experiment)
        except SpoolError:
            continue  # a live driver's: it replays its own
        print(f"replaying {len(spool.waiting)} writes an earlier driver left in {folder}")
        if not _catch_up(spool, timeout_s):
            print(_still_waiting(spool, timeout_s), file=sys.stderr)
            return spool
    return None


def sync(args) -> int:
    from scaling.spool import Spool, bound_retries
    from scaling.tracking import Tracker

    bound_retries()
    spool = Spool.open(args.spool, args.tracking_uri)
    Tracker(spool.store).check_reachable()
    waiting, started = len(spool.waiting), time.monotonic()
    caught_up = spool.drain(args.timeout)
    print(
        f"replayed {spool.replayed} of {waiting} writes into {spool.store} "
        f"in {time.monotonic() - started:.1f} s"
    )
    for problem in spool.rejected:
        print(f"the tracking store refused {problem}", file=sys.stderr)
    for artifact in spool.missing:
        print(f"not in the spool: {artifact}", file=sys.stderr)
    if not caught_up:
        print(_still_waiting(spool, args.timeout), file=sys.stderr)
        return TRACKING_BEHIND
    if spool.home and not spool.rejected:
        spool.remove()  # its store holds everything now
    else:
        spool.close()
        print(f"{spool.folder} is kept", file=sys.stderr)
    return 1 if spool.rejected else 0


def _max_failures() -> int:
    """Tune's retries of a trial: SCALING_MAX_FAILURES, else 2."""
    text = os.environ.get("SCALING_MAX_FAILURES", "2")
    if not text.strip().isdigit():
        raise UsageError(f"SCALING_MAX_FAILURES: must be a non-negative integer, got '{text}'")
    return int(text)


def status(args) -> int:
    from scaling.tracking import Tracker

    tracker = Tracker(args.tracking_uri, create=False)
    tracker.check_reachable()
    runs = sorted(tracker.latest_trial_runs(args.experiment), key=_trial_order)
    counts = Counter(run.data.tags.get(STATUS, "?") for run in runs)
    table = Table(title=f"{args.experiment}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    columns = ("trial", "status", "params", "seq_len", "tokens", VAL_LOSS, "median tokens/s",
               WALL_S, "run id", "error")  # fmt: skip
    for column in columns:
        table.add_column(column)
    for run in runs:
        m, p = run.data.metrics, run.data.params
        # The median over the trial's windows: the last one alone would hide a stall.
        rates = [x.value for x in tracker.client.get_metric_history(run.info.run_id, TOKENS_PER_S)]
        table.add_row(
            run.info.run_name,
            run.data.tags.get(STATUS, "?"),
            _count(int(p.get("params", 0))),
            p.get("seq_len", ""),
            _count(int(p.get("tokens", 0))),
            f"{m[VAL_LOSS]:.4f}" if VAL_LOSS in m else "",
            _count(statistics.median(rates)) if rates else "",
            f"{m[WALL_S]:.1f}" if WALL_S in m else "",
            run.info.run_id,
            run.data.tags.get(ERROR, ""),
        )
    _console().print(table)
    return 0


def _trial_order(run) -> tuple:
    """A trial run's place in the status table: by size, length, tokens, LR and seed, as
    numbers (as text, a budget of 1.25M would come before one of 201K)."""
    p = run.data.params
    lr = p.get(LR_PARAM) or p.get("train.lr") or 0  # runs from before the LR axis
    size, length, tokens = (int(p.get(key, 0)) for key in ("params", "seq_len", "tokens"))
    return size, length, tokens, float(lr), int(p.get("seed", 0)), run.info.run_name


# Which flag names each column a CSV of results is read by, and the flag of each thing
# `from_csv` may refuse.
CSV_FLAGS = {
    "params": "--params-col",
    "tokens": "--tokens-col",
    "flops": "--flops-col",
    VAL_LOSS: "--loss-col",
}
CSV_ERROR_FLAGS = {**CSV_FLAGS, "drop_highest_loss": "--drop-highest-loss"}


def _read_results(args):
    """The CSV of `args.csv` as runs, its columns named by the column flags."""
    from analysis.runs import CsvError, from_csv

    if not args.csv:
        raise UsageError("CSV: an empty path names no file")
    if args.drop_highest_loss < 0:
        raise UsageError(
            f"--drop-highest-loss: must be a non-negative integer, got {args.drop_highest_loss}"
        )
    columns = {name: getattr(args, flag[2:].replace("-", "_")) for name, flag in CSV_FLAGS.items()}
    try:
        return from_csv(args.csv, columns, args.drop_highest_loss)
    except CsvError as exc:
        flag = f"{CSV_ERROR_FLAGS[exc.column]}: " if exc.column else ""
        raise UsageError(f"{exc.path}: {flag}{exc.problem}") from None


def fit(args) -> int:
    from analysis.document import write_json
    from analysis.fit import FitError, fit_chinchilla

    points = _read_results(args).finished
    try:
        fit = fit_chinchilla(
            points["params"],
            points["tokens"],
            points[VAL_LOSS],
            bootstrap=args.bootstrap,
            seed=args.seed,
        )
    except FitError as exc:
        raise UsageError(f"{args.csv}: {exc}") from None
    print(fit)
    for warning in fit.warnings():  # what the JSON says of the numbers above, said here too
        print(f"warning: {warning}")
    document = {
        "chinchilla": fit.to_dict(),
        "data": {
            "file": str(args.csv),
            "points": fit.n_points,
            "dropped_highest_loss": args.drop_highest_loss,
        },
    }
    print(f"wrote {write_json(document, args.out)}")
    return 0


def _budgets(text: str, flag: str = "--budgets") -> list[float]:
    try:
        budgets = [float(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise UsageError(f"{flag}: must be numbers separated by commas, got '{text}'") from None
    if not budgets or any(not 0 < b < float("inf") for b in budgets):
        raise UsageError(f"{flag}: must be positive FLOP counts, got '{text}'")
    if flag == "--target-flops" and len(budgets) > 1:
        raise UsageError(f"{flag}: must be one FLOP count, got '{text}'")
    return budgets


def report(args) -> int:
    if args.experiment is None and args.csv is None:
        raise UsageError("report: give an EXPERIMENT from MLflow, or --csv FILE")
    if args.experiment is not None and args.csv is not None:
        raise UsageError("report: give an EXPERIMENT from MLflow or --csv FILE, not both")
    budgets = _budgets(args.budgets)
    target = None if args.target_flops is None else _budgets(args.target_flops, "--target-flops")[0]
    gpu = gpu_named(args.gpu)
    if gpu is None:
        raise UsageError(f"--gpu: unknown GPU '{args.gpu}', known: {', '.join(GPU_PEAK_FLOPS)}")
    if args.mfu is not None and not 0 < args.mfu <= 1:
        raise UsageError(f"--mfu: must be a fraction in (0, 1], got {args.mfu}")
    from analysis.analyse import analyse
    from analysis.fit import FitError
    from analysis.report import write_report
    from analysis.runs import from_mlflow
    from scaling.tracking import Tracker

    if args.csv is not None:
        tracker, name = None, Path(args.csv).stem
        runs, source = _read_results(args), f"CSV {args.csv}"
    else:
        tracker, name = Tracker(args.tracking_uri, create=False), args.experiment
        tracker.check_reachable()
        runs, source = from_mlflow(tracker.tracking_uri, name), f"MLflow {tracker.tracking_uri}"
    try:
        analysis = analyse(runs, name, source, budgets, gpu, mfu=args.mfu,
                           bootstrap=args.bootstrap, target_flops=target)  # fmt: skip
    except FitError as exc:
        raise UsageError(f"{name if args.csv is None else args.csv}: {exc}") from None
    out = write_report(analysis, args.out)
    if target is not None:
        _write_next_run(analysis, tracker, name, out)
    if tracker is not None:
        tracker.attach_report(name, out)
    print(_report_summary(analysis))
    print(
        f"wrote {out / 'report.html'}"
        + (f" and {out / 'next_run.yaml'}" if (out / "next_run.yaml").exists() else "")
    )
    return 0


def _write_next_run(analysis, tracker, name: str, out: Path) -> None:
    """next_run.yaml beside the report, in the terms of the grid's own spec where MLflow
    holds it; where the laws cannot give it, the report says why, and so does stderr."""
    from analysis.analyse import Refused
    from scaling.next_run import write_next_run

    if isinstance(analysis.next_run, Refused):
        print(f"next_run.yaml not written: {analysis.next_run}", file=sys.stderr)
        return
    grid = tracker.grid_spec(name) if tracker is not None else None
    write_next_run(analysis.next_run, grid, name, out)


def _report_summary(analysis) -> str:
    from analysis.analyse import Refused

    fit = analysis.chinchilla
    if isinstance(fit, Refused):
        return f"Chinchilla fit refused: {fit}"
    length = f"T={analysis.seq_len}: " if analysis.seq_len is not None else ""
    lines = [length + str(fit).splitlines()[0]]
    for name in ("alpha", "beta", "a"):
        low, high = fit.interval(lambda law, n=name: getattr(law, n)) or (float("nan"),) * 2
        lines.append(f"  {name:>5} = {getattr(fit.law, name):.4g}  [{low:.4g}, {high:.4g}]")
    held = analysis.held_out
    lines.append(
        f"  held-out error: {held}"
        if isinstance(held, Refused)
        else f"  held-out largest size: mean absolute error {held.mean_abs_error:.2%}"
    )
    lines += [f"  warning: {warning}" for warning in fit.warnings()]  # as `scaling fit` says
    return "\n".join(lines)


def ui(args) -> int:
    import mlflow

    from scaling.tracking import refuse_missing_store

    uri = args.tracking_uri or mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        raise UsageError(
            f"--tracking-uri: {uri} is already a tracking server; open it in a browser"
        )
    refuse_missing_store(uri)  # `mlflow server` would make an empty one
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow_bin) if mlflow_bin.exists() else "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--workers",
        "1",
    ]
    print(f"MLflow dashboard for {uri}: http://127.0.0.1:{args.port}", flush=True)
    # The dashboard needs no job runner: without it the server is a few processes, not 15.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    os.execvpe(command[0], command, env)
    return 0  # not reached


def sample(args) -> int:
    if args.max_new_tokens < 1:
        raise UsageError(f"--max-new-tokens: must be a positive integer, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise UsageError(f"--temperature: must be 0 (greedy) or more, got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k: must be a positive integer, got {args.top_k}")
    from scaling import inference
    from scaling.tracking import Tracker

    tracker = Tracker(args.tracking_uri, create=False)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = tracker.download_checkpoint(args.run_id, scratch)
        model, trial = inference.load_model(checkpoint)
    context = model.config.seq_len
    prompt = len(inference.encode(args.prompt))
    if prompt >= context:
        raise UsageError(
            f"--prompt: BOS + {prompt - 1} prompt bytes leave no room in the {context}-token "
            f"context {trial['name']} was trained with"
        )
    total = prompt + args.max_new_tokens
    if total > context:
        raise UsageError(
            f"--max-new-tokens: BOS + {prompt - 1} prompt bytes + "
            f"{args.max_new_tokens} new tokens = {total}, more than the {context}-token context "
            f"{trial['name']} was trained with (its learned positions end there)"
        )
    text = inference.sample(
        model, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed
    )
    print(text)
    return 0
