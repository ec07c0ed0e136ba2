"""The command line: `python -m bot COMMAND`; bot.cli.main parses, the other modules act."""
