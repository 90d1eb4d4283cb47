"""Wire models of every record on every topic, and their codec (DESIGN.md §2)."""
