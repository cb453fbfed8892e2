"""Translations: every message a user reads goes through gettext, and the French catalogue
that ships with djsync is complete, compiled and used — by row errors, runsync's summary,
the admin's pages and the failure mail."""

from __future__ import annotations

import ast
import gettext
import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import translation

from djsync.models import SyncRun
from djsync.runs import report
from djsync.runs.notifications import failure_mail
from tests.testapp.models import Product

PACKAGE = Path(__file__).resolve().parent.parent / "djsync"
LOCALE = PACKAGE / "locale"
COLUMNS = "sku,name,price,qty,updated,active"


def csv_file(tmp_path: Path, *lines: str, name: str = "products.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([COLUMNS, *lines]) + "\n")
    return path


def runsync(*args: Any, **options: Any) -> str:
    out = StringIO()
    call_command("runsync", *[str(a) for a in args], stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


@pytest.fixture
def job(make_job, tmp_path):
    Product.objects.create(sku="SAME", name="Thing", price=1, qty=1)
    csv_file(tmp_path, "SAME,Thing,1,1,,yes", "BAD,Thing,x,1,,yes", "NEW,Kite,3,4,,oui")
    return make_job("test_products", source={"path": "products.csv"})


# -- what a French user reads ---------------------------------------------------------------
def test_a_row_error_is_stored_and_shown_in_french(job):
    with translation.override("fr"), pytest.raises(CommandError) as info:
        runsync("test-products")
    assert "ligne 3, colonne 'price' : attendu : un nombre décimal, reçu : 'x'" in str(info.value)
    assert "1 ligne erronée" in str(info.value)
    error = SyncRun.objects.get().row_errors.get()
    assert error.message == "attendu : un nombre décimal, reçu : 'x'"
    assert not Product.objects.filter(sku="NEW").exists()


def test_runsync_summary_in_french_with_plurals(job):
    with translation.override("fr"):
        out = runsync("test-products", "--skip-errors")
    assert "test-products: réussie" in out
    assert "créées : 1, modifiées : 0, supprimées : 0, inchangées : 1, 1 erreur de ligne" in out
    assert "! 1 ligne, colonne 'price' : attendu : un nombre décimal, reçu : … ('x')" in out
    assert "— à la ligne 3" in out
    assert "(-v 2 liste chaque erreur de ligne)" in out
    run = SyncRun.objects.get()
    # French plurals: 0 and 1 take the singular, 2 and more the plural.
    counts = {**run.counts, "errors": 0}
    with translation.override("fr"):
        assert report.counts_text(counts).endswith(", 0 erreur de ligne")
        assert report.counts_text({**counts, "errors": 2}).endswith(", 2 erreurs de ligne")
    # The same run read in English: the stored counts, English words.
    assert report.counts_text(run.counts).endswith("1 unchanged, 1 row error")


def test_english_stays_the_default(job):
    out = runsync("test-products", "--skip-errors")
    assert "test-products: succeeded" in out
    assert "1 created, 0 updated, 0 deleted, 1 unchanged, 1 row error" in out
    assert "expected a decimal number, got" in SyncRun.objects.get().row_errors.get().message


def test_failure_mail_in_french(job):
    with translation.override("fr"):
        with pytest.raises(CommandError):
            runsync("test-products")
        subject, body = failure_mail(SyncRun.objects.get())
    assert "a échoué" in subject
    assert "Erreurs de ligne (1) :" in body
    assert "Déclencheur : commande ; source :" in body
    assert not mail.outbox  # built, not sent: the job has no recipients


def test_admin_pages_in_french(job, admin_client, settings):
    """A site whose LANGUAGE_CODE is French gets djsync's admin in French, no middleware
    needed; the row error stored by a French run reads in French there too."""
    settings.LANGUAGE_CODE = "fr"
    with translation.override("fr"):
        runsync("test-products", "--skip-errors")
    run = SyncRun.objects.get()
    page = admin_client.get(reverse("admin:djsync_syncrun_changelist")).content.decode()
    assert "exécutions de synchronisation" in page.lower()
    assert "lancée par" in page.lower()
    assert "réussie" in page
    jobs = admin_client.get(reverse("admin:djsync_syncjob_changelist")).content.decode()
    assert "Téléverser un fichier…" in jobs
    assert "Exécuter maintenant (aperçu et application d&#x27;un coup)" in jobs
    detail = admin_client.get(reverse("admin:djsync_syncrun_change", args=[run.pk]))
    text = detail.content.decode()
    assert "Erreurs de ligne" in text
    assert "attendu : un nombre décimal, reçu : &#x27;x&#x27;" in text
    assert "Télécharger toutes les erreurs de ligne (CSV)" in text
    # The count boxes agree with their numbers: one row error, one row unchanged.
    assert '<strong data-count="errors">1</strong> erreur de ligne</li>' in text
    assert '<strong data-count="unchanged">1</strong> inchangée</li>' in text


def test_admin_pages_stay_english_by_default(job, admin_client):
    runsync("test-products", "--skip-errors")
    page = admin_client.get(reverse("admin:djsync_syncrun_changelist")).content.decode()
    assert "sync runs" in page.lower() and "started by" in page.lower()


# -- the catalogue ---------------------------------------------------------------------------
def parse_po(path: Path) -> list[dict[str, Any]]:
    """The entries of a .po file: msgctxt, msgid, msgid_plural, msgstr (or msgstr[n]), flags.
    Small on purpose: the file is ours, written by makemessages, so its shape is known."""
    entries: list[dict[str, Any]] = []
    entry: dict[str, Any] = {"flags": set()}
    field = ""

    def close() -> None:
        nonlocal entry
        if "msgid" in entry:
            entries.append(entry)
        entry = {"flags": set()}

    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            close()
        elif line.startswith("#,"):
            entry["flags"].update(f.strip() for f in line[2:].split(","))
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            entry[field] += ast.literal_eval(line)
        else:
            field, _, value = line.partition(" ")
            if field == "msgid" and "msgid" in entry:
                close()
            entry[field] = ast.literal_eval(value)
    close()
    return entries


@pytest.fixture(scope="module")
def french() -> list[dict[str, Any]]:
    return parse_po(LOCALE / "fr" / "LC_MESSAGES" / "django.po")


def test_every_french_message_is_translated(french):
    header, *messages = french
    assert header["msgid"] == ""
    assert "Plural-Forms: nplurals=2; plural=(n > 1);" in header["msgstr"]
    assert "fuzzy" not in header["flags"]
    assert len(messages) > 500
    untranslated = [
        e["msgid"]
        for e in messages
        if "fuzzy" in e["flags"]
        or not all(e[k] for k in ("msgstr", "msgstr[0]", "msgstr[1]") if k in e)
        or ("msgid_plural" in e and not ("msgstr[0]" in e and "msgstr[1]" in e))
    ]
    assert not untranslated


PLACEHOLDER = re.compile(r"%(?:\(\w+\))?[sdr%]")


def test_french_messages_keep_their_placeholders(french):
    for e in french[1:]:
        if "python-format" not in e["flags"]:
            continue
        wanted = set(PLACEHOLDER.findall(e["msgid"] + e.get("msgid_plural", "")))
        for key in ("msgstr", "msgstr[0]", "msgstr[1]"):
            if key in e:
                assert set(PLACEHOLDER.findall(e[key])) == wanted, (e["msgid"], e[key])


def test_the_shipped_mo_is_compiled_from_the_po(french):
    """The .mo that runs is the .po that was reviewed: same entries, same translations (run
    ``django-admin compilemessages`` in djsync/ after editing the .po)."""
    with open(LOCALE / "fr" / "LC_MESSAGES" / "django.mo", "rb") as handle:
        catalog = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
    expected: dict[Any, str] = {}
    for e in french:
        msgid = e["msgid"] if "msgctxt" not in e else f"{e['msgctxt']}\x04{e['msgid']}"
        if "msgid_plural" in e:
            expected[(msgid, 0)] = e["msgstr[0]"]
            expected[(msgid, 1)] = e["msgstr[1]"]
        else:
            expected[msgid] = e["msgstr"]
    header = catalog.pop("")
    assert "Plural-Forms: nplurals=2; plural=(n > 1);" in header
    expected.pop("")
    assert catalog == expected


# -- nothing left untranslated -----------------------------------------------------------------
#: What a template may show outside translate tags: punctuation, arrows, entities.
NOT_TEXT = re.compile(r"&\w+;|[\s·•—–/:()«»‹›→!?.,;+~−✗|#…-]")


def test_templates_keep_user_text_in_translate_tags():
    leaks = {}
    for path in (PACKAGE / "templates").rglob("*.html"):
        text = path.read_text()
        text = re.sub(r"{% block bodyclass %}.*?{% endblock %}", "", text)  # CSS classes
        text = re.sub(r"{%\s*blocktranslate.*?endblocktranslate\s*%}", "", text, flags=re.S)
        text = re.sub(r"{%.*?%}|{{.*?}}|{#.*?#}", "", text, flags=re.S)
        text = re.sub(r"<[^>]*>", "", text, flags=re.S)
        left = NOT_TEXT.sub("", text)
        if left:
            leaks[path.name] = left
    assert not leaks


def test_no_fstring_inside_gettext():
    """``_(f"…")`` would look up a different msgid for every value: never found."""
    calls = {"_", "gettext", "gettext_lazy", "ngettext", "pgettext", "gettext_noop"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) in calls
                and any(isinstance(a, ast.JoinedStr) for a in node.args)
            ):
                found.append(f"{path.name}:{node.lineno}")
    assert not found
