"""The ``coolcore`` command line: one module per command group, built by :mod:`coolcore.cli.main`."""
