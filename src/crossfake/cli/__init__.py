"""Command-line interface: ``crossfake <command>``, one module per command (see :mod:`.main`)."""
