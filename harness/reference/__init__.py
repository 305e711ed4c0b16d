"""Slow, obvious reference implementations written from the published definitions.

Used by the tests and by `make bench` as the baseline; never on the fast path."""
