"""Send three records to a receiver with Python's own logging.handlers.HTTPHandler.

Usage: python3 py_sender.py HOST:PORT

Used by tests/receiver.rs and tests/interop.rs to check that examples/receiver.rs
and examples/receiver.py understand what Python's standard library puts on the
wire. Standard library only; Python 3.8 or newer. Sends:

1. POST  log.info('hello from python %s', 'x')   (Python sends msg unformatted)
2. GET   log.warning('warning over GET')
3. POST  log.exception('division failed') inside except ZeroDivisionError

For each record it prints one line, "CREATED MSECS LINENO" (the repr of
record.created and record.msecs, and record.lineno), so that the test can compute
the exact time and line number the receiver prints. Any failure to send (Python's
handler would only print it) makes this script exit non-zero.
"""

import logging
import logging.handlers
import socket
import sys


class StrictHTTPHandler(logging.handlers.HTTPHandler):
    """An HTTPHandler that raises instead of printing its errors."""

    def handleError(self, record):
        raise  # re-raises the exception emit() caught


class PrintTimeAndLine(logging.Filter):
    """Prints each record's created, msecs (as Python sends them) and lineno."""

    def filter(self, record):
        print('%r %r %d' % (record.created, record.msecs, record.lineno), flush=True)
        return True


def main():
    if len(sys.argv) != 2 or not sys.argv[1].rpartition(':')[2].isdigit():
        sys.exit('usage: py_sender.py HOST:PORT')
    host = sys.argv[1]
    socket.setdefaulttimeout(10)  # never hang on a silent receiver

    log = logging.getLogger('interop.py_sender')
    log.setLevel(logging.DEBUG)
    log.propagate = False

    def send(method, emit):
        handler = StrictHTTPHandler(host, '/log', method=method)
        handler.addFilter(PrintTimeAndLine())
        log.addHandler(handler)
        try:
            emit()
        finally:
            log.removeHandler(handler)
            handler.close()

    def divide():
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception('division failed')

    send('POST', lambda: log.info('hello from python %s', 'x'))
    send('GET', lambda: log.warning('warning over GET'))
    send('POST', divide)


if __name__ == '__main__':
    main()
