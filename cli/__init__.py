"""The ``pnrelight`` command line: translates arguments into pnrelight core calls."""
