"""Helpers the tests and the benchmarks share (a real TorchServe on loopback, generated videos,
the bad-input corpus), so neither imports the other."""
