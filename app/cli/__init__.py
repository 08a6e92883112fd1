"""The commands a user types: ``doascope`` and its subcommands (parsers, terminal output, exit codes)."""
