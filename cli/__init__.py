"""The `profiles` command line, on top of every other package (cli/main.py: the group)."""
