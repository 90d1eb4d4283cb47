"""Redis projections: the key schema, the pure fold of docs/design.md §3, the store and the
reader."""
