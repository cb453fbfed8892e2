"""Benchmarks of djsync against django-import-export and a hand-written COPY sync."""
