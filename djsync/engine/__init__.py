"""The engine: the pure differ, plans, row conversion and the generic apply."""
