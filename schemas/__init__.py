"""Wire models of every record on every topic, and their codec (docs/design.md §2)."""
