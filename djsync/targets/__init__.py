"""Targets other than a Django model: files for exports (see ``targets.files``)."""
