"""The command line's layer: one module per `bertl11` command (`add_arguments(parser)`, `run(args)`) and the
shared options (`options.py`). Commands import the domain; nothing in the domain imports from here."""
