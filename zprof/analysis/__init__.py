"""Analysis: symbols and allocation maths over collected measurements."""
