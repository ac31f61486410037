"""Packaged region maps, transfer rules and the cloud region table (data only)."""
