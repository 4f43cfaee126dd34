from rankjump.cli.main import entry

entry()
