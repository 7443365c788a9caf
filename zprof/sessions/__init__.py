"""Sessions: each runs one measurement and returns its run (a `zprof.model` record).

A session builds the target, starts it, probes and loads it, collects and
analyses; it reports its progress through `zprof.progress` and raises
ZprofError for what the user can act on. Commands call one session and hand
its run to an artifact writer and a reporter.
"""
