"""Collectors: what zprof reads from a running server (shim counters, processes)."""
