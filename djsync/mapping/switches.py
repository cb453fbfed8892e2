"""What a run may do (create, update, delete, limits): the one list every door derives from.

``SWITCHES`` names each switch once, with the ``SyncJob`` field that stores it, the
``runsync`` flag that overrides it and its help text. The job form, the admin's fieldset,
``runsync``'s flags, the run options ``djsync.run`` accepts, an importer's ``Meta``
options and the permissions an apply needs are all read from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from django.utils.translation import gettext_lazy

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

OnRowError = Literal["fail", "skip"]

#: ``action``: allow or forbid a kind of change (``--create/--no-create``); ``limit``: a
#: most (``--max-create N``); ``share``: a share 0–1 (``--delete-guard SHARE``);
#: ``flag``: a command-line flag that sets ``value`` when given (``--skip-errors``).
SwitchKind = Literal["action", "limit", "share", "flag"]


@dataclass(frozen=True, slots=True)
class Switches:
    """What a run may do. Resolved from run options, then the job, then the importer."""

    create: bool = True
    update: bool = True
    delete: bool = False
    max_create: int | None = None
    max_update: int | None = None
    max_delete: int | None = None
    max_total: int | None = None
    delete_guard: float | None = None
    on_row_error: OnRowError = "fail"
    force: bool = False

    def with_overrides(self, **overrides: Any) -> Switches:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def allowed_actions(self) -> dict[str, bool]:
        """Which plan actions (``"created"``, …) these switches let a run write."""
        return {s.action: bool(getattr(self, s.name)) for s in SWITCHES if s.action}


@dataclass(frozen=True, slots=True)
class Switch:
    """One switch: a field of ``Switches``, and where each door keeps or takes it."""

    #: The ``Switches`` field, run option and importer ``Meta`` option.
    name: str
    #: The ``SyncJob`` field that stores the job's value (None: a run option only).
    job_field: str | None
    #: The ``runsync`` option that overrides it for one run.
    flag: str
    help: StrOrPromise
    kind: SwitchKind
    #: ``action`` switches: the plan count they allow (``"created"``), and the permission
    #: on the target model writing it needs (``"add"``: ``app.add_model``).
    action: str | None = None
    permission: str | None = None
    #: ``flag`` switches: the run option's value when the flag is given.
    value: Any = None
    #: An importer may set it in ``class Meta`` (``force`` is for one run only).
    importer_option: bool = True

    @property
    def dest(self) -> str:
        """The attribute argparse stores the flag under (``--max-create`` → ``max_create``)."""
        return self.flag.lstrip("-").replace("-", "_")


SWITCHES: tuple[Switch, ...] = (
    Switch(
        "create",
        job_field="allow_create",
        flag="--create",
        help=gettext_lazy("Create rows the target lacks."),
        kind="action",
        action="created",
        permission="add",
    ),
    Switch(
        "update",
        job_field="allow_update",
        flag="--update",
        help=gettext_lazy("Update rows whose values differ."),
        kind="action",
        action="updated",
        permission="change",
    ),
    Switch(
        "delete",
        job_field="allow_delete",
        flag="--delete",
        help=gettext_lazy("Delete rows in scope that the source no longer has."),
        kind="action",
        action="deleted",
        permission="delete",
    ),
    Switch(
        "max_create",
        job_field="max_create",
        flag="--max-create",
        help=gettext_lazy("Fail if the plan has more creates."),
        kind="limit",
    ),
    Switch(
        "max_update",
        job_field="max_update",
        flag="--max-update",
        help=gettext_lazy("Fail if the plan has more updates."),
        kind="limit",
    ),
    Switch(
        "max_delete",
        job_field="max_delete",
        flag="--max-delete",
        help=gettext_lazy("Fail if the plan has more deletes."),
        kind="limit",
    ),
    Switch(
        "max_total",
        job_field="max_total",
        flag="--max-total",
        help=gettext_lazy("Fail if the plan has more changes in all."),
        kind="limit",
    ),
    Switch(
        "delete_guard",
        job_field="delete_guard",
        flag="--delete-guard",
        help=gettext_lazy(
            "Largest share (0-1) of the rows in scope a run may delete without force."
        ),
        kind="share",
    ),
    Switch(
        "on_row_error",
        job_field="on_row_error",
        flag="--skip-errors",
        help=gettext_lazy("Apply the good rows and report the bad ones, instead of failing."),
        kind="flag",
        value="skip",
    ),
    Switch(
        "force",
        job_field=None,
        flag="--force",
        help=gettext_lazy("Pass the delete guard (limits still apply)."),
        kind="flag",
        value=True,
        importer_option=False,
    ),
)

#: Run options that override a job's switches (None leaves the job's value).
SWITCH_NAMES: tuple[str, ...] = tuple(s.name for s in SWITCHES)
#: SyncJob fields whose names differ from the switch they set.
JOB_FIELDS: dict[str, str] = {
    s.name: s.job_field for s in SWITCHES if s.job_field and s.job_field != s.name
}
#: The SyncJob fields that hold switches, in table order (the job form shows these).
JOB_FIELD_NAMES: tuple[str, ...] = tuple(s.job_field for s in SWITCHES if s.job_field)
#: The permission on the target model each plan action needs (``"created"`` → ``"add"``).
ACTION_PERMISSIONS: dict[str, str] = {
    s.action: s.permission for s in SWITCHES if s.action and s.permission
}
#: Switches an importer may set in its ``class Meta``.
IMPORTER_SWITCHES: tuple[str, ...] = tuple(s.name for s in SWITCHES if s.importer_option)


def job_switches(job: Any) -> dict[str, Any]:
    """The switches a job sets (None: as the importer says), by switch name."""
    values = {s.name: getattr(job, s.job_field) for s in SWITCHES if s.job_field}
    if not values.get("on_row_error"):  # a blank choice: as the importer says
        values["on_row_error"] = None
    return values


def job_fieldset_rows() -> list[tuple[str, ...] | str]:
    """The job's switch fields grouped for the admin: the actions on one line, the limits
    on one line, each other switch on its own."""
    rows: list[tuple[str, ...] | str] = []
    for kind, fields in _by_kind():
        rows.extend([tuple(fields)] if kind in ("action", "limit") else fields)
    return rows


def _by_kind() -> Iterator[tuple[SwitchKind, list[str]]]:
    kind: SwitchKind | None = None
    group: list[str] = []
    for s in SWITCHES:
        if s.job_field is None:
            continue
        if s.kind != kind and group:
            yield kind, group  # type: ignore[misc]
            group = []
        kind = s.kind
        group.append(s.job_field)
    if group:
        yield kind, group  # type: ignore[misc]


def flag_options(parsed: dict[str, Any]) -> dict[str, Any]:
    """The run options given on the command line, from ``runsync``'s parsed flags."""
    options: dict[str, Any] = {}
    for s in SWITCHES:
        given = parsed.get(s.dest)
        if s.kind == "flag":
            options[s.name] = s.value if given else None
        else:
            options[s.name] = given
    return options
