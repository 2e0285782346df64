"""Runs inside the sandbox when AGENT_NETWORK_ALLOW is set: the agent's only way out.

The sandbox has no network but loopback. This listens on 127.0.0.1:PORT there,
hands every connection to Compound's filtering proxy through a Unix socket
bound into the sandbox, and runs the agent with HTTP(S)_PROXY pointing at it.
It exits with the agent's status. Standard library only, run with `python -I -S`:
it must not import anything from the service.

    python -I -S netbridge.py SOCKET PORT -- ARGV...
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading


def pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(listener: socket.socket, path: str) -> None:
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(path)
        except OSError:
            client.close()
            continue
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()


def main() -> int:
    path, port, separator, *argv = sys.argv[1:]
    assert separator == "--" and argv, __doc__
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(port)))
    listener.listen(64)
    threading.Thread(target=serve, args=(listener, path), daemon=True).start()
    child = subprocess.Popen(argv, env=os.environ)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: child.send_signal(number))
    code = child.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
