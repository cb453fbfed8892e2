"""The demo project: djsync syncing categories, products, departments and employees."""
