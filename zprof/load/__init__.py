"""Load drivers: RESP2 over loopback."""
