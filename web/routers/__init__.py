"""One router module per resource; each is thin over a use-case function in ``flows/``."""
