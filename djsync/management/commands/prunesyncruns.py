"""``manage.py prunesyncruns``: delete old run history (runs, changes, row errors, uploads)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.store import prune_runs


class Command(BaseCommand):
    help = (
        "Delete runs queued more than --older-than days ago, with their changes, row errors "
        "and uploaded files, in bounded batches. Active runs and previews still waiting for "
        "their apply (younger than UPLOAD_MAX_AGE) are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=float,
            metavar="DAYS",
            help=_("Age in days of the runs to delete (default: the KEEP_RUNS_DAYS setting)."),
        )
        parser.add_argument(
            "--dry-run", action="store_true", help=_("Count what would be deleted; delete nothing.")
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            metavar="N",
            help=_("Rows deleted per statement (default: the PRUNE_BATCH_SIZE setting)."),
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        days = opts["older_than"]
        if days is None:
            days = settings.KEEP_RUNS_DAYS
        if days is None:
            raise CommandError(
                _('give --older-than DAYS (DJSYNC["KEEP_RUNS_DAYS"] is None: keep every run)')
            )
        if days < 0:
            raise CommandError(_("--older-than must be 0 or more days"))
        if opts["batch_size"] is not None and opts["batch_size"] < 1:
            raise CommandError(_("--batch-size must be 1 or more"))
        pruned = prune_runs(
            timedelta(days=days), batch_size=opts["batch_size"], dry_run=opts["dry_run"]
        )
        if opts["verbosity"] > 0:
            verb = _("would delete") if opts["dry_run"] else "deleted"
            self.stdout.write(
                _("%(verb)s %(pruned)s older than %(days)s days")
                % {"verb": verb, "pruned": pruned, "days": format(days, "g")}
            )
