"""Rebuild, verify and purge tooling over the same fold as the live worker."""
