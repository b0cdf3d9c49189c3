"""Unit tests of the pure domain: fast, no I/O."""
