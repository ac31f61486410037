"""``python -m residency_sdk.cli``: the ``residency`` command."""

from residency_sdk.cli.app import main

main()
