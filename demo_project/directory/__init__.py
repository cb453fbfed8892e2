"""The directory: the demo's stand-in for an external system (accounts, groups, memberships).

It has its own database (``routers.DirectoryRouter``) and a token-protected JSON API under
``/directory/api/`` (``views``), so djsync's HTTP target syncs into a real server, not a
mock. See docs/demo-directory.md.
"""
