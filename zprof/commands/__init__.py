"""One module per subcommand; each wires build, run, load, collect, analyse and report."""
