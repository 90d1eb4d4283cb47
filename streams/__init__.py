"""The Faust app, its agents and topics, and the `profiles` command line."""
