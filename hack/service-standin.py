#!/usr/bin/env python3
"""Stand-in for the `transition-operator` Service in front of two operator replicas run as host
processes (hack/e2e.sh with E2E_CHAOS=1): the Service routes heartbeats to the leader's Pod (by its
leader label); here only the leader opens its heartbeat port, so each connection goes to the first
upstream that accepts it.

    service-standin.py [--for DIR] LISTEN_PORT UPSTREAM_PORT...

(--for is ignored: it names the run, so a later run can find and stop a leftover stand-in.)
"""
import socket
import sys
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn, upstreams):
    for port in upstreams:
        try:
            up = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            continue
        up.settimeout(None)
        threading.Thread(target=pipe, args=(conn, up), daemon=True).start()
        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()
        return
    conn.close()  # no leader: the agent's request fails and it retries, as with an empty Service


def main():
    args = sys.argv[1:]
    if args[:1] == ["--for"]:
        args = args[2:]
    if len(args) < 2:
        sys.exit(__doc__)
    listen, upstreams = int(args[0]), [int(p) for p in args[1:]]
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen))
    srv.listen(64)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn, upstreams), daemon=True).start()


if __name__ == "__main__":
    main()
