"""Demo app: categories and products, departments and employees, synced from files."""
