"""zprof: performance validation for Zig servers such as Zoltraak."""

__version__ = "0.2.0"
