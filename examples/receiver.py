#!/usr/bin/env python3
"""Receive log records over HTTP and hand them to Python's logging.

Run it, then point a sender at http://127.0.0.1:8000/ (an http-logger HttpLogger, or
Python's own logging.handlers.HTTPHandler):

    python3 examples/receiver.py --port 8000    # --port 0 picks a free port
    cargo run --example hello                    # in another terminal

Each request is one record: the fields of a POST form body, or of a GET query string.
The record is rebuilt with logging.makeLogRecord, its fields turned back into Python's
types, and handled by the logger 'remote'. Give that logger your own handlers (or let it
propagate to yours) and the records of a Rust service land in your Python logging setup.
Every field is an attribute of the record, so the fields http-logger adds (hostname, the
record's key-values) can be used in a format string: --format '%(hostname)s %(message)s'.

Python's HTTPHandler sends its msg unformatted (args arrive as a repr, which cannot be
rebuilt) and its exc_info as a repr: that repr is shown where a traceback would be.
A request that is not a record gets a 400 and one line on stderr. Standard library only,
Python 3.8 or newer.
"""
import argparse
import logging
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

REMOTE = logging.getLogger('remote')
FORMAT = '%(asctime)s %(levelname)-8s %(name)s:%(lineno)d %(message)s'
REQUIRED = ('name', 'msg', 'levelname', 'levelno', 'created')
INTS = ('levelno', 'lineno', 'process', 'thread')
FLOATS = ('created', 'msecs', 'relativeCreated')
# thread and process too: Python sends None when logging.logThreads/logProcesses is off.
NONES = ('exc_info', 'exc_text', 'stack_info', 'taskName', 'thread', 'process')
MAX_BODY = 64 * 1024 * 1024


def convert(key, text):
    """A field's text as the type Python's LogRecord has for it."""
    if text == 'None' and key in NONES:
        return None
    if key in INTS:
        return int(text)
    if key in FLOATS:
        value = float(text)
        time.localtime(value)  # refuses NaN, infinities and times asctime could not show
        return value
    return text


def rebuild(fields, sender):
    """A LogRecord from the fields parse_qs decoded; ValueError if they are not one."""
    missing = [key for key in REQUIRED if key not in fields]
    if missing:
        raise ValueError('not a log record: no ' + ', '.join(missing))
    attrs = {}
    for key, values in fields.items():
        if hasattr(logging.LogRecord, key):  # e.g. getMessage: it would replace the method
            raise ValueError('field %r would replace LogRecord.%s' % (key, key))
        try:
            attrs[key] = convert(key, values[0])
        except (ValueError, OverflowError, OSError) as e:
            raise ValueError('bad %s %r: %s' % (key, values[0], e))
    attrs['args'] = ()  # http-logger sends the message formatted
    if attrs.get('exc_info') is not None:
        # A string (a repr, or a Rust error's Debug), where Formatter expects a tuple: keep
        # it as exc_info_repr, and show it when there is no exc_text.
        attrs['exc_info_repr'] = attrs['exc_info']
        attrs['exc_info'] = None
        if attrs.get('exc_text') is None:
            attrs['exc_text'] = attrs['exc_info_repr']
    attrs.setdefault('hostname', sender)  # Python's HTTPHandler sends none
    return logging.makeLogRecord(attrs)


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'  # keep-alive: a sender reuses its connection
    timeout = 60  # seconds a silent connection is kept

    def do_GET(self):
        self.receive(self.path.partition('?')[2])

    def do_POST(self):
        try:
            length = int(self.headers.get('Content-Length', ''))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True  # the body cannot be skipped: end the connection
            return self.reject(411, 'a POST needs a Content-Length of at most %d' % MAX_BODY)
        self.receive(self.rfile.read(length).decode('utf-8', 'replace'))

    def receive(self, data):
        try:
            record = rebuild(parse_qs(data, keep_blank_values=True), self.client_address[0])
        except ValueError as e:
            return self.reject(400, str(e))
        REMOTE.handle(record)
        self.reply(200, '')

    def reject(self, status, why):
        path = self.path.partition('?')[0]
        sys.stderr.write('receiver.py: %s %s: %s\n' % (self.command, path, why))
        sys.stderr.flush()
        self.reply(status, why + '\n')

    def reply(self, status, text):
        body = text.encode('utf-8')
        self.send_response(status)
        self.send_header('Content-Type', 'text/plain; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code='-', size='-'):
        pass  # no access log; http.server's own errors (say a 501) still print a line


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition('\n')[0])
    parser.add_argument('--port', type=int, default=8000, help='0 picks a free port (default 8000)')
    parser.add_argument('--bind', default='127.0.0.1', help='IPv4 address (default 127.0.0.1)')
    parser.add_argument('--format', default=FORMAT, help='logging format (default %(default)r)')
    args = parser.parse_args()

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(args.format))
    REMOTE.addHandler(handler)

    try:
        server = ThreadingHTTPServer((args.bind, args.port), Handler)
    except OSError as e:
        sys.exit('receiver.py: cannot listen on %s:%d: %s' % (args.bind, args.port, e))
    sys.stderr.write('listening on http://%s:%d\n' % server.server_address[:2])
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
