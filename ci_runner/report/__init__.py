"""Ledger → markdown report and loss plot."""
