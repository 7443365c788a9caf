"""What a run measured: the typed records every session fills, every artifact
saves and every reporter renders. Plain dataclasses with no behaviour beyond a
few derived figures, so that a saved run reads back into exactly these types
(`zprof.artifact`).

One module per kind of run, and `common` for what several share.
"""
