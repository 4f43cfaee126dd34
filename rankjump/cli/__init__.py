"""The ``rankjump`` command line: one module per command, one error mapping.

- :mod:`~rankjump.cli.main`: the parser of every subcommand and :func:`main`, which maps bad
  input to one line and exit code 2 and signals to 130 / 143;
- :mod:`~rankjump.cli.command`: what every command shares (SIGTERM as an interrupt, notes,
  ``--set``, what an interrupted command left);
- the commands: :mod:`~rankjump.cli.demo`, :mod:`~rankjump.cli.simulate` (``simulate`` and
  ``sweep``), :mod:`~rankjump.cli.bench`, :mod:`~rankjump.cli.replay`,
  :mod:`~rankjump.cli.rare`, :mod:`~rankjump.cli.stats`, :mod:`~rankjump.cli.plot`.
"""

from rankjump.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
