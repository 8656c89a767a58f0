"""Outgoing HTTP/1.1: a keep-alive pool per origin. Knows nothing of auth, routes or callers."""
