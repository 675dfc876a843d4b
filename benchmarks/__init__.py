"""Benchmark scenarios (mesc bench and the recorded project results)."""
