"""Stored jobs move to the trust model of docs/security.md: a file path under a root of
DJSYNC["FILE_ROOTS"] becomes {"root", "path"} relative to it, an inline SQL query identical
to one of DJSYNC["SQL_QUERIES"] becomes its name. What cannot be rewritten safely is left as
it is; ``manage.py check`` reports it (djsync.W010)."""

from __future__ import annotations

import os
from typing import Any

from django.db import migrations


def _same_sql(a: Any, b: Any) -> bool:
    def norm(text: Any) -> str:
        return " ".join(str(text).strip().rstrip(";").split()).lower()

    return isinstance(a, str) and isinstance(b, str) and norm(a) == norm(b)


def _file(options: dict[str, Any], roots: dict[str, str]) -> dict[str, Any]:
    from djsync.sources.policy import relative_to_root

    path = options.get("path")
    if not isinstance(path, str) or "root" in options or "\x00" in path:
        return options
    absolute = os.path.isabs(os.path.expanduser(path))
    if not absolute and not path.startswith(".."):
        # a relative path was read from the working directory; keep it when it already
        # names a file in the only root
        if len(roots) == 1 and os.path.isfile(os.path.join(next(iter(roots.values())), path)):
            return options
    found = relative_to_root(os.path.abspath(os.path.expanduser(path)), roots)
    if found is None:
        return options
    name, relative = found
    moved = {**options, "path": relative}
    if len(roots) > 1:
        moved["root"] = name
    return moved


def _sql(options: dict[str, Any], queries: dict[str, Any]) -> dict[str, Any]:
    query = options.get("query")
    if not isinstance(query, str) or query in queries:
        return options
    using = options.get("using", "default")
    for name, spec in sorted(queries.items()):
        spec = {"query": spec} if isinstance(spec, str) else spec
        if _same_sql(spec.get("query"), query) and spec.get("using", "default") == using:
            moved = {k: v for k, v in options.items() if k != "using"}
            moved["query"] = name
            return moved
    return options


def rewrite(options: Any, roots: dict[str, str], queries: dict[str, Any], depth: int = 0) -> Any:
    """The job options in the new form, as far as that can be done safely."""
    if not isinstance(options, dict) or depth > 5:
        return options
    options = dict(options)
    kind = options.get("kind", "file")
    if kind == "file" and roots:
        options = _file(options, roots)
    elif kind == "sql":
        options = _sql(options, queries)
    elif kind == "derived" and isinstance(options.get("from"), dict):
        options["from"] = rewrite(options["from"], roots, queries, depth + 1)
    if isinstance(options.get("sources"), dict):
        options["sources"] = {
            name: rewrite(entry, roots, queries, depth + 1)
            for name, entry in options["sources"].items()
        }
    return options


def forwards(apps: Any, schema_editor: Any) -> None:
    from djsync.conf import settings

    roots = dict(settings.FILE_ROOTS or {})
    queries = dict(settings.SQL_QUERIES or {})
    SyncJob = apps.get_model("djsync", "SyncJob")
    for job in SyncJob.objects.using(schema_editor.connection.alias).iterator():
        source = rewrite(job.source, roots, queries)
        target = job.target
        if isinstance(target, dict) and target.get("kind") == "file" and roots:
            target = {**_file({k: v for k, v in target.items() if k != "kind"}, roots)}
            target = {"kind": "file", **target}
        if source != job.source or target != job.target:
            job.source, job.target = source, target
            job.save(update_fields=["source", "target"])


class Migration(migrations.Migration):
    dependencies = [
        ("djsync", "0006_permissions"),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop, elidable=True),
    ]
