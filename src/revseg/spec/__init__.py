"""Resolved domain objects the compiler and runner see (the "parsed" layer)."""
