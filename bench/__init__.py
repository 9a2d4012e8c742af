"""Benchmarks for taskmill. Never part of `make test`; run them with `make bench` or
`python -m bench.engine`. Each one compares taskmill against a baseline measured in the same
run, because absolute figures on a shared machine drift."""
