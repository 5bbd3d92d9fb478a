"""Prefect flows and the `evidence` command line: thin orchestration over `evidence` and `storage`."""
