from wiseft.cli import entry

entry()
