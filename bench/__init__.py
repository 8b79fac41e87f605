"""The benchmark of the bus: a program that prints figures (`python -m bench`), not a test."""
