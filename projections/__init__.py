"""Redis projections: the key schema, the pure fold of DESIGN.md §3, the store and the reader."""
