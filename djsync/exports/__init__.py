"""Exports: a job whose target is a file, and the file formats it writes."""
