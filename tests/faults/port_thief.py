"""A start command for one fault: another program takes the port zprof chose, between zprof's choice and the
server's bind.

    python port_thief.py SOCKET BINARY PORT

It tells the test listening on the Unix socket SOCKET which port the server is about to bind, waits until
the test answers (having taken the port, the first time), then runs BINARY --port PORT in its place.
"""

from __future__ import annotations

import os
import socket
import sys

ANSWER_TIMEOUT_S = 60.0


def main() -> None:
    path, binary, port = sys.argv[1:4]
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(ANSWER_TIMEOUT_S)
        connection.connect(path)
        connection.sendall(port.encode())
        connection.recv(16)
    os.execv(binary, [binary, "--port", port])


if __name__ == "__main__":
    main()
