"""zprof: performance validation for Zig servers such as Zoltraak."""

__version__ = "0.1.0"
