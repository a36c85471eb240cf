"""The syncer process: fetches the pages of sync runs from the suppliers (runner.py)."""
