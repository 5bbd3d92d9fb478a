"""The ``evidence`` command line: a front door over the use cases in ``flows/``."""
