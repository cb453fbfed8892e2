"""Webhooks, the trust part: which jobs take deliveries (``DJSYNC["WEBHOOKS"]``), the
signature a delivery carries, and the table that refuses the same delivery twice.

A sender signs ``<timestamp>.<body>`` with HMAC-SHA256 and sends
``X-Djsync-Signature: t=<unix seconds>,v1=<hex digest>`` (Stripe's scheme; docs/realtime.md,
"Webhooks"). The timestamp must be within ``WEBHOOK_TOLERANCE`` seconds of now, and a
delivery already applied within that window is a replay. The secrets are settings,
never job data: a person who may edit jobs in the admin cannot open a webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, router, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from djsync.conf import settings
from djsync.models import SyncJob, SyncRun, WebhookDelivery

__all__ = [
    "SIGNATURE_HEADER",
    "Refused",
    "Webhook",
    "attach",
    "claim",
    "declaration_problems",
    "declared",
    "delivery_id",
    "forget",
    "settle",
    "sign",
    "verify",
]

#: The header a sender signs a delivery in.
SIGNATURE_HEADER = "X-Djsync-Signature"
#: Shortest secret accepted: a webhook secret is a random string, not a password.
MIN_SECRET = 16
#: Signatures (``v1=`` entries) one header may carry: a sender that rotates sends two.
MAX_SIGNATURES = 5
#: Characters of the header read at all.
MAX_HEADER = 1000
#: Characters of a delivery's own ``id``.
MAX_ID = 200
#: Expired deliveries deleted per delivery received: pruning stays cheap and keeps up.
PRUNE_BATCH = 500


class Refused(Exception):
    """A delivery refused before anything was applied: the HTTP status and why."""

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Webhook:
    """A job's webhook as ``DJSYNC["WEBHOOKS"]`` declares it."""

    job: str
    secrets: tuple[str, ...]


def declaration_problems(name: Any, entry: Any) -> list[str]:
    """What is wrong with one entry of ``DJSYNC["WEBHOOKS"]`` (empty: nothing)."""
    where = f'DJSYNC["WEBHOOKS"][{str(name)[:100]!r}]'
    if not isinstance(name, str) or not name:
        return [_("%(where)s: the key must be a job's name") % {"where": where}]
    if not isinstance(entry, dict):
        return [_('%(where)s: must be a dict, e.g. {"secret": "…"}') % {"where": where}]
    unknown = sorted(str(k) for k in set(entry) - {"secret"})
    if unknown:
        return [
            _('%(where)s: unknown keys %(unknown)s (it takes "secret")')
            % {"where": where, "unknown": ", ".join(repr(k[:50]) for k in unknown)}
        ]
    secrets = entry.get("secret")
    secrets = [secrets] if isinstance(secrets, str) else secrets
    if not isinstance(secrets, list | tuple) or not secrets:
        return [_('%(where)s: "secret" must be a string or a list of strings') % {"where": where}]
    for secret in secrets:
        if not isinstance(secret, str) or len(secret) < MIN_SECRET:
            return [
                _(
                    '%(where)s: every "secret" must be a string of at least %(least)s '
                    "characters (a random one, e.g. from secrets.token_urlsafe())"
                )
                % {"where": where, "least": MIN_SECRET}
            ]
    return []


def declared(name: str) -> Webhook | None:
    """The webhook declared for the job ``name``, or None (the job takes no deliveries)."""
    hooks = settings.WEBHOOKS or {}
    if not isinstance(hooks, dict):
        raise ImproperlyConfigured(_('DJSYNC["WEBHOOKS"] must be a dict of jobs by name'))
    entry = hooks.get(name)
    if entry is None:
        return None
    problems = declaration_problems(name, entry)
    if problems:
        raise ImproperlyConfigured(problems[0])
    secret = entry["secret"]
    return Webhook(job=name, secrets=(secret,) if isinstance(secret, str) else tuple(secret))


# -- signatures ------------------------------------------------------------------------------
def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Djsync-Signature`` value of ``body`` signed now (or at ``timestamp``): what a
    Python sender sends (docs/realtime.md shows the same with openssl)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify(hook: Webhook, header: str | None, body: bytes, *, now: float | None = None) -> int:
    """The delivery's signed timestamp, once its signature matches one of the hook's
    secrets and the timestamp is within WEBHOOK_TOLERANCE of now; else :class:`Refused`
    (401)."""
    if not header:
        raise Refused(
            401, _("the delivery has no %(header)s header") % {"header": SIGNATURE_HEADER}
        )
    timestamp, digests = _parse(header[: MAX_HEADER + 1])
    now = time.time() if now is None else now
    tolerance = int(settings.WEBHOOK_TOLERANCE)
    if abs(now - timestamp) > tolerance:
        raise Refused(
            401,
            _(
                "the delivery's timestamp is %(seconds)s s %(way)s the server's clock, more "
                'than DJSYNC["WEBHOOK_TOLERANCE"] (%(tolerance)s s): sign each delivery when '
                "it is sent"
            )
            % {
                "seconds": format(int(abs(now - timestamp)), ","),
                "way": _("behind") if timestamp < now else _("ahead of"),
                "tolerance": tolerance,
            },
        )
    expected = [_digest(secret, timestamp, body) for secret in hook.secrets]
    # Every pair compared, in constant time each: no early exit tells which one was close.
    matched = False
    for digest in digests:
        for good in expected:
            matched |= hmac.compare_digest(digest.encode(), good.encode())
    if not matched:
        raise Refused(
            401,
            _(
                "the signature does not match: sign '<timestamp>.<body>' with HMAC-SHA256 and "
                "the job's secret"
            ),
        )
    return timestamp


def _parse(header: str) -> tuple[int, list[str]]:
    """``t=…,v1=…[,v1=…]`` → (timestamp, digests)."""
    bad = Refused(
        401,
        _("the %(header)s header must read t=<unix seconds>,v1=<hex digest>")
        % {"header": SIGNATURE_HEADER},
    )
    if len(header) > MAX_HEADER:
        raise bad
    timestamp: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise bad
        if name == "t":
            if timestamp is not None or not (value.isascii() and value.isdigit()):
                raise bad
            timestamp = int(value[:20])
        elif name == "v1":
            digests.append(value.strip().lower())
        # other schemes (v0, v2…) are skipped, as Stripe's receivers do
    if timestamp is None or not digests or len(digests) > MAX_SIGNATURES:
        raise bad
    return timestamp, digests


# -- replays ---------------------------------------------------------------------------------
def delivery_id(given: str | None, timestamp: int, body: bytes) -> str:
    """What a delivery is known by: its own ``id``, else a SHA-256 of its signed bytes."""
    if given:
        return given
    return "sha256:" + hashlib.sha256(str(timestamp).encode() + b"." + body).hexdigest()


def claim(job: SyncJob, delivery: str, timestamp: int) -> WebhookDelivery:
    """Take ``delivery`` of ``job`` for a run, or :class:`Refused`: 409 when it was applied
    already (a replay), 503 while another request applies it. A claim whose run failed, or
    whose request died before its run began, is taken over."""
    prune()
    # As Django keeps times (aware or naive, per USE_TZ): now, plus what is left of the window.
    left = timestamp + int(settings.WEBHOOK_TOLERANCE) + 1 - time.time()
    expires = timezone.now() + timedelta(seconds=left)
    using = router.db_for_write(WebhookDelivery)
    try:
        with transaction.atomic(using=using):
            return WebhookDelivery.objects.create(job=job, delivery=delivery, expires_at=expires)
    except IntegrityError:
        pass
    held = WebhookDelivery.objects.select_related("run").filter(job=job, delivery=delivery).first()
    if held is None:  # pruned meanwhile: its timestamp left the window, as this one will
        return claim(job, delivery, timestamp)
    run = held.run
    if held.applied or (run is not None and run.status == SyncRun.Status.SUCCEEDED):
        raise Refused(
            409,
            _("delivery %(delivery)r was applied already (run #%(run)s): a replay is refused")
            % {"delivery": delivery, "run": held.run_id or "?"},
        )
    stale = timezone.now() - timedelta(seconds=float(settings.STALE_AFTER))
    dead = run is None and held.received_at < stale
    if (run is not None and run.status in SyncRun.DONE) or dead:
        taken = WebhookDelivery.objects.filter(pk=held.pk, run=run, applied=False).update(
            run=None, received_at=timezone.now(), expires_at=expires
        )
        if taken:
            held.refresh_from_db()
            return held
    raise Refused(
        503,
        _("delivery %(delivery)r is being applied by another request; send it again later")
        % {"delivery": delivery},
        retry_after=5,
    )


def attach(claimed: WebhookDelivery, run: SyncRun) -> None:
    """The claim's run was recorded: a request that dies from here leaves a run to look at."""
    WebhookDelivery.objects.filter(pk=claimed.pk).update(run=run)
    claimed.run = run


def settle(claimed: WebhookDelivery, run: SyncRun) -> None:
    """The claim's run succeeded: from now on the delivery is a replay."""
    WebhookDelivery.objects.filter(pk=claimed.pk).update(run=run, applied=True)


def forget(claimed: WebhookDelivery) -> None:
    """The claim's run failed (it wrote nothing), or never began: the sender may send the
    delivery again."""
    WebhookDelivery.objects.filter(pk=claimed.pk, applied=False).delete()


def prune() -> None:
    """Delete deliveries whose timestamps left the window (a bounded batch at a time)."""
    gone = WebhookDelivery.objects.filter(expires_at__lt=timezone.now()).values("pk")
    pks: Sequence[int] = list(gone[:PRUNE_BATCH].values_list("pk", flat=True))
    if pks:
        WebhookDelivery.objects.filter(pk__in=pks).delete()
