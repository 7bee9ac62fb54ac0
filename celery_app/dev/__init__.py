"""The demo and the worker-process helper tests and benchmarks use."""
