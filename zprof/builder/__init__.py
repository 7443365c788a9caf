"""Finding Zig, reading the project, and building it with or without the shim."""
