"""The profile explorer: an HTTP read API and web page over the Redis projections."""
