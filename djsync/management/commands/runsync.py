"""``manage.py runsync``: run sync jobs now, from a shell or cron."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from djsync import queue
from djsync.conf import settings
from djsync.exceptions import DjsyncError
from djsync.exports import jobs as exports
from djsync.extras import require
from djsync.mapping.switches import SWITCHES, Switch, flag_options
from djsync.models import SyncJob, SyncRun
from djsync.runs import orchestrator as services
from djsync.runs import report
from djsync.runs.progress import Extent

#: Kinds of row error the summary lists at verbosity 1 (every stored one at 2).
ERROR_GROUPS_SHOWN = 10


class Command(BaseCommand):
    help = "Run sync jobs: read the source, diff against the target, apply (or --dry-run)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("jobs", nargs="*", metavar="JOB", help=_("Names of the jobs to run."))
        parser.add_argument("--list", action="store_true", help=_("List the jobs, one a line."))
        parser.add_argument(
            "--dry-run", action="store_true", help=_("Compute and record the plan; write nothing.")
        )
        parser.add_argument("--file", help=_("Read this file instead of the job's source."))
        parser.add_argument("--encoding", help=_("Encoding of --file (default: the job's)."))
        parser.add_argument(
            "--file-format", help=_("Format of --file when its name does not say (csv, xlsx…).")
        )
        for switch in SWITCHES:
            add_switch(parser, switch)
        parser.add_argument("--diff", action="store_true", help=_("Print field-level changes."))
        parser.add_argument(
            "--format",
            dest="output",
            choices=["text", "json"],
            default="text",
            help=_("Summary format (json: machine-readable, on stdout)."),
        )
        parser.add_argument(
            "--no-progress", action="store_true", help=_("Never show a progress bar.")
        )
        parser.add_argument(
            "--async",
            dest="queue",
            action="store_true",
            help=_("Queue the run for a Celery worker and print its run id."),
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help=_("Queue the run, follow its progress to the end, exit with its result."),
        )
        parser.add_argument(
            "--partitions",
            type=int,
            metavar="N",
            help=_(
                "Split the job's source (a CSV file, a partition column, an API's pages) into N "
                "ranges read by Celery workers, then apply the run once (PostgreSQL); queues "
                "the run and follows it, as --wait."
            ),
        )
        parser.add_argument(
            "--follow",
            dest="consume",
            action="store_true",
            help=_(
                "Consume a real-time job's changes in the foreground as they come, until Ctrl-C."
            ),
        )
        parser.add_argument(
            "--watch",
            action="store_true",
            help=_(
                "Poll the job in the foreground (its incremental source, or its drop folder) "
                "every watch interval, until Ctrl-C."
            ),
        )
        parser.add_argument(
            "--cancel",
            type=int,
            metavar="RUN",
            help=_("Cancel a queued or running run (by id): it ends cancelled, writing nothing."),
        )
        parser.add_argument(
            "--export",
            metavar="PATH",
            help=_(
                "Write the job's model rows to this file instead of syncing ({date} and {job} are "
                "filled; format from the extension)."
            ),
        )
        parser.add_argument("--export-format", help=_("Format of --export (csv, xlsx, jsonl…)."))
        parser.add_argument(
            "--apply",
            type=int,
            metavar="RUN",
            help=_(
                "Apply a stored preview (a run made with --dry-run, by id) if the target has not "
                "changed since; with the preview's options."
            ),
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        """A failed run ends in one line per job (``CommandError``); the traceback of an
        unexpected exception goes to the ``djsync`` logger, and to stderr only with
        ``--traceback`` or ``-v 3``."""
        #: Exceptions of the failed runs, by job name, for --traceback.
        self.raised: dict[str, BaseException] = {}
        with _quiet_tracebacks():
            try:
                return self._handle(opts)
            finally:
                if self.raised and (opts.get("traceback") or opts["verbosity"] >= 3):
                    for name, exc in self.raised.items():
                        self.stderr.write(f"{name}:\n" + "".join(traceback.format_exception(exc)))

    def _handle(self, opts: dict[str, Any]) -> None:
        if opts.get("cancel") is not None:
            return self._cancel(opts["cancel"])
        if opts.get("apply") is not None:
            return self._apply(opts["apply"], opts)
        if opts["list"]:
            for job in SyncJob.objects.all():
                state = "" if job.enabled else _(" (disabled)")
                self.stdout.write(f"{job.name}\t{job.importer}{state}\t{job.description}")
            return
        if not opts["jobs"]:
            raise CommandError(_("name at least one job (see --list)"))
        if opts["file"] and len(opts["jobs"]) > 1:
            raise CommandError(_("--file goes with a single job"))
        jobs = [self._job(name) for name in opts["jobs"]]
        if opts.get("consume") or opts.get("watch"):
            return self._consume(jobs, watch=opts.get("watch", False))
        if opts.get("partitions") is not None and not opts.get("queue"):
            opts["wait"] = True  # a split run is a chord of tasks: queued, then followed
        if opts.get("queue") or opts.get("wait"):
            return self._queue(jobs, opts)
        failures: list[str] = []
        results: list[dict[str, Any]] = []
        for job in jobs:
            run = self._run_one(job, opts)
            if opts["output"] == "json":
                results.append(report.run_as_dict(run, changes=opts["diff"]))
            else:
                self._print_run(run, opts)
            if run.status == SyncRun.Status.FAILED or run.error:
                failures.append(f"{job.name}: {run.error}")
        if opts["output"] == "json":
            self.stdout.write(json.dumps({"runs": results}, indent=2, default=str))
        if failures:
            raise CommandError("\n".join(failures))

    def _job(self, name: str) -> SyncJob:
        try:
            return services.get_job(name)
        except DjsyncError as exc:
            raise CommandError(str(exc)) from None

    def _consume(self, jobs: list[SyncJob], *, watch: bool = False) -> None:
        """--follow (a real-time consumer) or --watch (polls) in the foreground."""
        from djsync.realtime.foreground import follow
        from djsync.watch.foreground import watch as poll

        if len(jobs) != 1:
            raise CommandError(
                _("%(option)s goes with a single job")
                % {"option": "--watch" if watch else "--follow"}
            )
        try:
            (poll if watch else follow)(jobs[0], self.stdout.write)
        except DjsyncError as exc:
            raise CommandError(str(exc)) from None

    def _cancel(self, run_id: int) -> None:
        from djsync.runs.monitor import cancel

        run = SyncRun.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(_("no run #%(run_id)s") % {"run_id": run_id})
        try:
            run = cancel(run)
        except DjsyncError as exc:
            raise CommandError(str(exc)) from None
        done = _("cancelled") if run.status == SyncRun.Status.CANCELLED else _("asked to cancel")
        self.stdout.write(f"{run.job.name}: run {run.pk} {done}")

    def _apply(self, run_id: int, opts: dict[str, Any]) -> None:
        """--apply RUN: write a previewed run's stored plan, as the admin's apply does."""
        if opts["jobs"]:
            raise CommandError(
                _(
                    "--apply takes a run id, not a job: runsync --apply RUN (a job's previews: "
                    "the admin, or runsync JOB --dry-run prints the run id)"
                )
            )
        given = [flag for flag in _APPLY_CONFLICTS if opts.get(flag.lstrip("-").replace("-", "_"))]
        given += [
            s.flag for s in SWITCHES if opts.get(s.dest) is not None and opts[s.dest] is not False
        ]
        if given:
            raise CommandError(
                _(
                    "--apply does not go with %(given)s: it applies the preview as it was made, "
                    "with its options"
                )
                % {"given": ", ".join(given)}
            )
        run = SyncRun.objects.select_related("job").filter(pk=run_id).first()
        if run is None:
            raise CommandError(_("no run #%(run_id)s") % {"run_id": run_id})
        if run.status != SyncRun.Status.PREVIEWED:
            raise CommandError(
                _(
                    "%(name)s: run %(pk)s is %(status)s; only a previewed run (runsync JOB "
                    "--dry-run) can be applied"
                )
                % {"name": run.job.name, "pk": run.pk, "status": run.status}
            )
        bar = _ProgressBar(run.job.name, enabled=self._show_progress(opts))
        try:
            run = services.apply_previewed(run, progress=bar.progress())
        except Exception as exc:
            # A stale preview, a limit…: the run failed and says why, in the summary. Taken
            # meanwhile, or another run active (the preview stays): one line.
            self.raised[run.job.name] = exc
            failed = getattr(exc, "run", None)
            if failed is None or failed.status != SyncRun.Status.FAILED:
                raise CommandError(f"{run.job.name}: {services.cause(exc)}") from None
            run = failed
        finally:
            bar.close()
        if opts["output"] == "json":
            result = report.run_as_dict(run, changes=opts["diff"])
            self.stdout.write(json.dumps({"runs": [result]}, indent=2, default=str))
        else:
            self._print_run(run, opts)
        if run.status == SyncRun.Status.FAILED or run.error:
            raise CommandError(f"{run.job.name}: {run.error}")

    def _queue(self, jobs: list[SyncJob], opts: dict[str, Any]) -> None:
        """--async: queue each job and print the run ids; --wait: then follow them to the end."""
        if opts["encoding"]:
            raise CommandError(_("--encoding does not go with --async/--wait; set it on the job"))
        try:  # a worker runs it: in process, the run would end with this command
            require("celery", "a queued run (runsync --async, --wait)")
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        runs = []
        for job in jobs:
            try:
                run = queue.queue_run(
                    job,
                    dry_run=opts["dry_run"],
                    file=opts["file"],
                    format=opts["file_format"],
                    trigger=SyncRun.Trigger.COMMAND,
                    partitions=opts.get("partitions"),
                    **_switches(opts),
                )
            except DjsyncError as exc:  # e.g. the broker did not answer: the run failed
                self.raised[job.name] = exc
                raise CommandError(f"{job.name}: {exc}") from None
            except Exception as exc:  # e.g. the database went away: one line, no traceback
                self.raised[job.name] = exc
                raise CommandError(f"{job.name}: {services.cause(exc)}") from None
            runs.append(run)
            if not opts["wait"] and opts["output"] == "text":
                verbose = opts["verbosity"] > 0
                self.stdout.write(
                    _("%(name)s: queued run %(pk)s") % {"name": job.name, "pk": run.pk}
                    if verbose
                    else str(run.pk)
                )
        if not opts["wait"]:
            if opts["output"] == "json":
                queued = [{"job": r.job.name, "run": r.pk, "status": r.status} for r in runs]
                self.stdout.write(json.dumps({"runs": queued}, indent=2))
            return
        finished = [self._follow(run, opts) for run in runs]
        failures = [
            f"{run.job.name}: {run.error or run.status}"
            for run in finished
            if run.status in (SyncRun.Status.FAILED, SyncRun.Status.CANCELLED)
        ]
        if opts["output"] == "json":
            results = [report.run_as_dict(run, changes=opts["diff"]) for run in finished]
            self.stdout.write(json.dumps({"runs": results}, indent=2, default=str))
        else:
            for run in finished:
                self._print_run(run, opts)
        if failures:
            raise CommandError("\n".join(failures))

    def _follow(self, run: SyncRun, opts: dict[str, Any]) -> SyncRun:
        from djsync.runs.monitor import follow

        bar = _ProgressBar(run.job.name, enabled=self._show_progress(opts))
        lines = opts["verbosity"] >= 2 and not bar.enabled

        def show(current: SyncRun) -> None:
            recorded = current.progress or {}
            if bar.enabled and current.status == SyncRun.Status.READING:
                if recorded.get("phase") == "reading" and recorded.get("total"):
                    bar._extent(Extent(recorded["done"], recorded["total"], recorded["unit"]))
                bar._read(current.rows_read)
            elif bar.enabled and current.status == SyncRun.Status.APPLYING:
                changes = current.created + current.updated + current.deleted
                bar._apply(current.rows_applied, changes)
            if lines:
                self.stderr.write(
                    _(
                        "%(name)s: run %(pk)s %(status)s (%(rows_read)s read, %(rows_applied)s "
                        "applied)"
                    )
                    % {
                        "name": current.job.name,
                        "pk": current.pk,
                        "status": current.status,
                        "rows_read": current.rows_read,
                        "rows_applied": current.rows_applied,
                    }
                )

        try:
            return follow(run.pk, on_update=show, no_worker_after=settings.WAIT_NO_WORKER)
        except KeyboardInterrupt:
            raise CommandError(
                _("stopped following run %(pk)s; it goes on (runsync --cancel %(pk)s cancels it)")
                % {"pk": run.pk}
            ) from None
        finally:
            bar.close()

    def _run_one(self, job: SyncJob, opts: dict[str, Any]) -> SyncRun:
        options = _switches(opts)
        source_options = {
            k: v for k, v in (("encoding", opts["encoding"]), ("format", opts["file_format"])) if v
        }
        if opts.get("export"):
            try:
                return exports.export_job(
                    job,
                    path=opts["export"],
                    format=opts.get("export_format"),
                    dry_run=opts["dry_run"],
                    trigger=SyncRun.Trigger.COMMAND,
                )
            except Exception as exc:
                self.raised[job.name] = exc
                if getattr(exc, "run", None) is None:
                    raise CommandError(f"{job.name}: {services.cause(exc)}") from None
                return exc.run  # type: ignore[attr-defined]
        bar = _ProgressBar(job.name, enabled=self._show_progress(opts))
        try:
            return services.run(
                job,
                file=opts["file"],
                dry_run=opts["dry_run"],
                trigger=SyncRun.Trigger.COMMAND,
                source_options=source_options,
                progress=bar.progress(),
                **options,
            )
        except Exception as exc:  # the run recorded it (failed); the summary says so
            self.raised[job.name] = exc
            run = getattr(exc, "run", None)
            if run is None:
                raise CommandError(f"{job.name}: {services.cause(exc)}") from None
            return run
        finally:
            bar.close()

    def _show_progress(self, opts: dict[str, Any]) -> bool:
        shown = (
            not opts["no_progress"]
            and opts["verbosity"] > 0
            and opts["output"] == "text"
            and sys.stderr.isatty()
        )
        if shown and find_spec("tqdm") is None:  # a bar is a nicety: say how to get one
            if not getattr(self, "_told_tqdm", False):
                self.stderr.write('(no progress bar without tqdm: pip install "djsync[progress]")')
                self._told_tqdm = True
            return False
        return shown

    def _print_run(self, run: SyncRun, opts: dict[str, Any]) -> None:
        verbosity = opts["verbosity"]
        if verbosity == 0:
            return
        style = self.style.SUCCESS if run.status != SyncRun.Status.FAILED else self.style.ERROR
        self.stdout.write(style(report.summary_line(run)))
        self.stdout.write(f"  {report.times_line(run)}")
        if (path := report.path_line(run)) is not None:
            self.stdout.write(f"  {path}")
        for warning in run.warnings:
            self.stdout.write(self.style.WARNING(_("warning: %(warning)s") % {"warning": warning}))
        if opts["diff"]:
            for line in report.change_lines(run):
                self.stdout.write(f"  {line}")
        elif verbosity >= 1 and (run.created or run.updated or run.deleted):
            sample = list(report.change_lines(run, limit=5 if verbosity == 1 else 50))
            total = run.created + run.updated + run.deleted
            for line in sample:
                self.stdout.write(f"  {line}")
            if total > len(sample):
                self.stdout.write(
                    _("  … and %(total)s more (use --diff for all)")
                    % {"total": total - len(sample)}
                )
        if run.errors:
            self._print_row_errors(run, verbosity)
        if run.error and run.status != SyncRun.Status.FAILED:
            self.stdout.write(self.style.WARNING(f"  {run.error}"))

    def _print_row_errors(self, run: SyncRun, verbosity: int) -> None:
        """Grouped by column and message; every stored one too at verbosity 2."""
        for line in report.error_group_lines(run, limit=ERROR_GROUPS_SHOWN):
            self.stdout.write(self.style.WARNING(f"  {line}"))
        if verbosity >= 2:
            for line in report.error_lines(run):
                self.stdout.write(self.style.WARNING(f"  {line}"))
        else:
            self.stdout.write(_("  (-v 2 lists every row error)"))


@contextmanager
def _quiet_tracebacks() -> Iterator[None]:
    """Without a handler configured for the ``djsync`` logger, Python would print the
    traceback it logs for an unexpected exception on stderr (logging's last resort);
    the command's one-line error is enough there. A configured LOGGING keeps it."""
    logger = logging.getLogger("djsync")
    if logger.hasHandlers():
        yield
        return
    silent = logging.NullHandler()
    logger.addHandler(silent)
    try:
        yield
    finally:
        logger.removeHandler(silent)


#: Options that choose what a run reads or how it is run: a stored preview has them.
_APPLY_CONFLICTS = (
    "--dry-run",
    "--file",
    "--encoding",
    "--file-format",
    "--export",
    "--async",
    "--wait",
    "--list",
)


def add_switch(parser: CommandParser, switch: Switch) -> None:
    """The flag that overrides one switch for this run (djsync/mapping/switches.py)."""
    where = "" if switch.kind == "flag" else _(" (default: the job's setting)")
    text = f"{switch.help.rstrip('.')}{where}."
    if switch.kind == "action":
        parser.add_argument(
            switch.flag, action=argparse.BooleanOptionalAction, default=None, help=text
        )
    elif switch.kind == "limit":
        parser.add_argument(switch.flag, type=_count, metavar="N", help=text)
    elif switch.kind == "share":
        parser.add_argument(switch.flag, type=_share, metavar="SHARE", help=text)
    else:
        parser.add_argument(switch.flag, action="store_true", help=text)


def _switches(opts: dict[str, Any]) -> dict[str, Any]:
    """The run options (overrides of the job's switches) given on the command line."""
    return flag_options(opts)


def _share(value: str) -> float:
    share = float(value)
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(_("a share between 0 and 1"))
    return share


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(_("must be 0 or more"))
    return number


class _ProgressBar:
    """A tqdm bar on stderr while the run reads and applies; nothing when not a terminal.

    While a file is read the bar counts its bytes against its size (a total known for
    free), with the rows read beside them; a source that cannot say how far it is (a
    query, an API without a total) shows rows and their rate. The apply counts changes
    against the plan's. tqdm gives the rate and the time left."""

    def __init__(self, label: str, *, enabled: bool, file: Any = None) -> None:
        self.label = label
        self.enabled = enabled
        self.file = file
        self.bar: Any = None
        self.extent: Extent | None = None

    def progress(self) -> services.Progress:
        if not self.enabled:
            return services.Progress()
        return services.Progress(on_read=self._read, on_apply=self._apply, on_extent=self._extent)

    def _extent(self, extent: Extent) -> None:
        self.extent = extent

    def _read(self, rows: int) -> None:
        extent = self.extent
        if extent is not None and extent.total:
            self._ensure(f"{self.label}: reading", extent.total, extent.unit)
            self.bar.n = extent.done
            self.bar.set_postfix_str(f"{rows:,} rows", refresh=False)
        else:
            self._ensure(f"{self.label}: reading", None, "rows")
            self.bar.n = rows
        self.bar.refresh()

    def _apply(self, done: int, total: int) -> None:
        self._ensure(f"{self.label}: applying", total, "changes")
        self.bar.n = done
        self.bar.refresh()

    def _ensure(self, desc: str, total: int | None, unit: str) -> None:
        from tqdm import tqdm

        if self.bar is not None and self.bar.desc.startswith(desc) and self.bar.total == total:
            return
        self.close()
        in_bytes = unit == "bytes"
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit="B" if in_bytes else f" {unit}",
            unit_scale=in_bytes,
            unit_divisor=1024 if in_bytes else 1000,
            file=self.file or sys.stderr,
            leave=False,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
