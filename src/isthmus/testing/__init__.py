"""Helpers shared by the test suite and the benchmarks: data generation, temporary
servers on loopback.  Not used by the running archive."""
