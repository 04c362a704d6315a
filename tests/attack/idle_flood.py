"""Opens COUNT connections to 127.0.0.1:PORT and never sends a byte on them.

Usage: python3 idle_flood.py PORT COUNT

Connects without blocking (500 at a time), waits (at most 60 s) until every connect has finished, prints
`connected N refused M pending P`, then holds every socket open until its stdin ends.
Standard library only.
"""
import selectors
import socket
import sys
import time


def main():
    port, count = int(sys.argv[1]), int(sys.argv[2])
    selector = selectors.DefaultSelector()
    sockets = []
    connected = refused = 0
    pending = 0
    deadline = time.monotonic() + 60
    # At most 500 connects in flight: past the listen backlog, the kernel drops SYNs and
    # the client retries them seconds later, which only makes the flood slower.
    while (len(sockets) < count or pending) and time.monotonic() < deadline:
        while len(sockets) < count and pending < 500:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(('127.0.0.1', port))
            selector.register(s, selectors.EVENT_WRITE)
            sockets.append(s)
            pending += 1
        for key, _ in selector.select(timeout=1):
            s = key.fileobj
            selector.unregister(s)
            pending -= 1
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected += 1
            else:
                refused += 1
    pending += count - len(sockets)
    print('connected %d refused %d pending %d' % (connected, refused, pending), flush=True)
    sys.stdin.read()


if __name__ == '__main__':
    main()
