#!/usr/bin/env python3
r"""Receive log records over HTTP and hand them to Python's logging.

Run it, then point a sender at http://127.0.0.1:8000/ (an http-logger HttpLogger, or
Python's own logging.handlers.HTTPHandler):

    python3 examples/receiver.py --port 8000    # --port 0 picks a free port
    cargo run --example hello                    # in another terminal

Each request is one record: the fields of a POST form body, or of a GET query string; or a
batch of records, by the POST's Content-Type: application/x-ndjson (one JSON object per line,
blank lines skipped, the last line feed optional) or application/json (one JSON object, or an
array of them). Each record is rebuilt with logging.makeLogRecord, its fields turned back
into Python's types, and handled by the logger 'remote'. Give that logger your own handlers (or let it
propagate to yours) and the records of a Rust service land in your Python logging setup.
Every field is an attribute of the record, so the fields http-logger adds (hostname, the
record's key-values) can be used in a format string: --format '%(hostname)s %(message)s'.

Python's HTTPHandler sends its msg unformatted (args arrive as a repr, which cannot be
rebuilt) and its exc_info as a repr: that repr is shown where a traceback would be.

In a JSON record, a string value is the field's text, as in a form; null is None where a
record may have None (exc_info, exc_text, stack_info, taskName, thread, process); any other
value (a number, true, an array, an object) is its compact JSON text, so "levelno": 20 works
as "levelno": "20" does. A key sent twice: the first value counts, as in a form. A body with
Content-Encoding: gzip is inflated first, to at most --max-body bytes (past them: 413, and no
more is inflated); any other encoding but identity gets 415. All or nothing: every record of
a body is checked and rebuilt before any is handed to the logger; a body that is not JSON, or
one line or element that is not a record, gets a 400 for the whole request, with the first
bad line's number on stderr, and none of its records is logged (a sender can split the batch
to find the bad one). The rule is the one of examples/receiver.rs.
A request that is not a record gets a 400 and one line on stderr; a client that goes away
in the middle of a request, or stays silent in it past --timeout, one line too; one that
closes, resets or idles out between two requests, none. Standard library only, Python 3.8
or newer.

What it prints cannot drive the terminal: in every field of the --format (the message, the
name, exc_text, hostname, key-values...) and in its stderr lines, the C0 controls (\t, \r
and ESC among them), DEL, the C1 controls, Unicode's bidi controls (U+061C, U+200E, U+200F,
U+202A to U+202E, U+2066 to U+2069) and the line and paragraph separators (U+2028, U+2029)
are shown escaped as Python writes them in a repr: \t, \r, \x1b, \x9b, \u202e, \u2028. A
line feed passes only where a record has lines (its message, exc_text, stack_info and
exc_info repr); anywhere else it is shown as \n. A backslash is not doubled. Only what this
script prints is escaped: the record handed to the logger 'remote', and so to your own
handlers, keeps the text as it arrived.
"""
import argparse
import copy
import json
import logging
import re
import socket
import sys
import time
import traceback
import zlib
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
# The characters shown escaped (see the module's docstring): C0 but the line feed, DEL and C1,
# Bidi_Control, U+2028 and U+2029. The line feed is added where a record cannot have lines.
UNSAFE = r'\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029'
UNSAFE_IN_LINES = re.compile('[' + UNSAFE + ']')
UNSAFE_IN_A_LINE = re.compile('[\\n' + UNSAFE + ']')
SHORT = {'\t': '\\t', '\n': '\\n', '\r': '\\r'}
# The record attributes whose text may be several lines.
MULTILINE = ('msg', 'message', 'exc_text', 'stack_info', 'exc_info_repr')


def escaped(char):
    """How an unsafe character is shown: as in a repr."""
    code = ord(char.group())
    return SHORT.get(char.group()) or ('\\x%02x' % code if code < 0x100 else '\\u%04x' % code)


def shown(text, lines=False):
    """text with every unsafe character escaped; with lines, its line feeds kept."""
    return (UNSAFE_IN_LINES if lines else UNSAFE_IN_A_LINE).sub(escaped, text)


def say(text):
    """One line on stderr, escaped."""
    sys.stderr.write('receiver.py: %s\n' % shown(text))
    sys.stderr.flush()


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


class Refused(Exception):
    """A request refused: the status to answer, and why (the exception's text)."""

    def __init__(self, status, why):
        super().__init__(why)
        self.status = status


def inflated(body, cap):
    """A gzip body inflated: every member, one after the other (as gzip.decompress). It never
    holds more than cap bytes: past them, Refused(413), the rest not inflated."""
    if not body:
        raise Refused(400, 'bad gzip body: it is empty')
    out = bytearray()
    data = bytes(body)
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip only
        while True:
            try:
                # cap + 1 - len(out) > 0 here: a max_length of 0 would mean no limit.
                out += inflater.decompress(data, cap + 1 - len(out))
            except zlib.error as e:
                raise Refused(400, 'bad gzip body: %s' % e)
            if len(out) > cap:
                raise Refused(413, 'gzip body of %d bytes inflates past the limit of %d bytes'
                              % (len(body), cap))
            data = inflater.unconsumed_tail
            if inflater.eof or not data:
                break
        if not inflater.eof:
            raise Refused(400, 'bad gzip body: it ends in the middle of a member')
        data = inflater.unused_data  # the next member
    return out


def decoded(encodings, body, cap):
    """The body undone of its Content-Encoding headers: none or identity leave it as it is,
    gzip (x-gzip) is inflated within cap; Refused(415) for any other."""
    codings = [c.strip().lower() for value in encodings for c in value.split(',')]
    codings = [c for c in codings if c and c != 'identity']
    if not codings:
        return body
    if codings in (['gzip'], ['x-gzip']):
        return inflated(body, cap)
    raise Refused(415, 'Content-Encoding %s is not supported (gzip and identity are)'
                  % ', '.join(encodings)[:200])


def no_constant(name):
    raise ValueError('%s is not JSON' % name)


def first_wins(pairs):
    """A JSON object as a dict, the first value of a key sent twice kept (parse_qs's [0])."""
    obj = {}
    for key, value in pairs:
        obj.setdefault(key, value)
    return obj


def loads(data):
    """The JSON value of UTF-8 bytes, as strict as examples/receiver.rs: no NaN nor
    Infinity, no byte order mark, no other encoding; ValueError if it is not JSON."""
    try:
        return json.loads(bytes(data).decode('utf-8'), object_pairs_hook=first_wins,
                          parse_constant=no_constant)
    except RecursionError:
        raise ValueError('nested too deep')


def as_text(key, value):
    """A JSON record's value as the text of a form field: a string as it is, null as 'None'
    where a record may have None, anything else as its compact JSON text."""
    if value is None and key in NONES:
        return 'None'
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(',', ':'))


def json_record(value, sender):
    """A LogRecord from a JSON value; ValueError if it is not an object that is a record."""
    if not isinstance(value, dict):
        raise ValueError('a JSON %s, not an object (a record)' % type(value).__name__)
    fields = {key: [as_text(key, v)] for key, v in value.items()}
    for key, (text,) in fields.items():
        # A lone surrogate (JSON allows "\ud800") could not be printed: UnicodeEncodeError.
        key.encode('utf-8')
        text.encode('utf-8')
    return rebuild(fields, sender)


def batch(body, ndjson, sender):
    """The LogRecords of a JSON body (one object, or an array of them) or of an NDJSON body
    (an object per line); ValueError naming the first bad line (or element) if any is bad."""
    if ndjson:
        records, bad, first = [], 0, None
        for number, line in enumerate(bytes(body).split(b'\n'), 1):
            if not line.strip(b' \t\r'):
                continue  # blank: nothing but JSON's white space
            try:
                records.append(json_record(loads(line), sender))
            except ValueError as e:  # JSONDecodeError and UnicodeError are ValueErrors
                bad += 1
                first = first or 'bad NDJSON line %d: %s' % (number, e)
        if first:
            raise ValueError('%s (bad lines: %d of %d)' % (first, bad, bad + len(records)))
        return records
    try:
        value = loads(body)
    except ValueError as e:
        raise ValueError('bad JSON body: %s' % e)
    records = []
    for number, element in enumerate(value if isinstance(value, list) else [value], 1):
        try:
            records.append(json_record(element, sender))
        except ValueError as e:
            raise ValueError('bad JSON body: record %d: %s' % (number, e))
    return records


class EscapingFormatter(logging.Formatter):
    """A Formatter whose output cannot drive the terminal: it formats a copy of the record
    whose text attributes are escaped (line feeds kept only in MULTILINE), then escapes what
    it wrote (line feeds kept: they also join the message and exc_text), for anything the
    format reaches another way."""

    def format(self, record):
        safe = copy.copy(record)
        for key, value in vars(record).items():
            if isinstance(value, str):
                setattr(safe, key, shown(value, lines=key in MULTILINE))
        return shown(super().format(safe), lines=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'  # keep-alive: a sender reuses its connection
    timeout = 60  # seconds a silent connection is kept (--timeout)
    max_body = MAX_BODY  # bytes of a body, as sent and as inflated (--max-body)

    def handle(self):
        # http.server's loop, but a connection that ends between two requests (closed, reset,
        # silent past the timeout) ends quietly: only once a request has begun is its loss
        # worth a line (Server.handle_error, or http.server's "Request timed out").
        while True:
            try:
                if not self.rfile.peek(1):
                    return  # closed by the client
            except (ConnectionError, socket.timeout):
                return
            self.close_connection = True  # until the request asks for keep-alive
            self.handle_one_request()
            if self.close_connection:
                return

    def do_GET(self):
        self.receive(self.path.partition('?')[2])

    def do_POST(self):
        try:
            length = int(self.headers.get('Content-Length', ''))
        except ValueError:
            length = -1
        if not 0 <= length <= self.max_body:
            self.close_connection = True  # the body cannot be skipped: end the connection
            return self.reject(411, 'a POST needs a Content-Length of at most %d'
                               % self.max_body)
        body = self.rfile.read(length)
        if len(body) < length:  # the client closed its end: no record from half a body
            self.close_connection = True
            return say('%s:%d: connection lost: the body ended after %d of %d bytes'
                       % (self.client_address[:2] + (len(body), length)))
        try:
            body = decoded(self.headers.get_all('Content-Encoding', []), body, self.max_body)
        except Refused as e:
            return self.reject(e.status, str(e))
        media = self.headers.get('Content-Type', '').partition(';')[0].strip().lower()
        if media not in ('application/json', 'application/x-ndjson'):
            return self.receive(body.decode('utf-8', 'replace'))
        # A batch, or one JSON record: all of it rebuilt before any record is logged.
        try:
            records = batch(body, media == 'application/x-ndjson', self.client_address[0])
        except ValueError as e:
            return self.reject(400, '%s; the whole request is refused, none of it logged' % e)
        for record in records:
            REMOTE.handle(record)
        self.reply(200, '')

    def receive(self, data):
        try:
            record = rebuild(parse_qs(data, keep_blank_values=True), self.client_address[0])
        except ValueError as e:
            return self.reject(400, str(e))
        REMOTE.handle(record)
        self.reply(200, '')

    def reject(self, status, why):
        # http.server decodes the request line as Latin-1: show the path's UTF-8 as text.
        path = self.path.partition('?')[0].encode('latin-1').decode('utf-8', 'replace')
        say('%s %s: %s' % (self.command, path, why))
        self.reply(status, why + '\n')

    def reply(self, status, text):
        body = text.encode('utf-8')
        self.send_response(status)
        self.send_header('Content-Type', 'text/plain; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if body:  # no empty write after the head: the client may have read it and gone
            self.wfile.write(body)

    def log_request(self, code='-', size='-'):
        pass  # no access log; http.server's own errors (say a 501) still print a line

    def log_message(self, format, *args):
        # http.server's errors (a 501, a malformed request line, a request timed out): one
        # escaped line, like the others.
        say('%s:%d: %s' % (self.client_address[:2] + (format % args,)))


class Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the listen backlog, as examples/receiver.rs

    def handle_error(self, request, client_address):
        # Called for what escaped the handler; socketserver would print a traceback.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, socket.timeout)):
            # The client went away in the middle of a request, or of its answer.
            say('%s:%d: connection lost: %s' % (client_address[:2] + (error,)))
        else:
            say('%s:%d: error while serving:' % client_address[:2])
            sys.stderr.write(shown(traceback.format_exc(), lines=True))
            sys.stderr.flush()


def positive(text):
    """A --max-body: a whole number above 0."""
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def seconds(text):
    """A --timeout: a number of seconds above 0."""
    value = float(text)
    if not 0 < value < float('inf'):
        raise ValueError(text)
    return value


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.partition('\n')[0],
        epilog='Control characters, bidi controls and line separators in what it prints are '
        'shown escaped (\\x1b, \\u202e); see the docstring at the top of the script.',
    )
    parser.add_argument(
        '--port', type=int, default=8000,
        help='TCP port to listen on; 0 picks a free one (default: %(default)s)')
    parser.add_argument(
        '--bind', default='127.0.0.1', metavar='ADDRESS',
        help='IPv4 address to listen on; 0.0.0.0 for every interface (default: %(default)s)')
    parser.add_argument(
        '--format', default=FORMAT,
        help="the logging.Formatter format ('%%'-style) of the records printed on stdout; "
        'every field is an attribute (default: %(default)s)')
    parser.add_argument(
        '--timeout', type=seconds, default=Handler.timeout, metavar='SECONDS',
        help='seconds a connection may stay silent, between two requests or in the middle of '
        'one, before it is closed (default: %(default)s)')
    parser.add_argument(
        '--max-body', type=positive, default=Handler.max_body, metavar='BYTES',
        help='largest POST body accepted (past it, 411 and the connection closed), and largest '
        'a gzip body may inflate to (past it, 413) (default: %(default)s)')
    args = parser.parse_args()

    handler = logging.StreamHandler(sys.stdout)
    try:
        handler.setFormatter(EscapingFormatter(args.format))
    except ValueError as e:
        sys.exit('receiver.py: bad --format: %s' % e)
    REMOTE.addHandler(handler)
    Handler.timeout = args.timeout
    Handler.max_body = args.max_body

    try:
        server = Server((args.bind, args.port), Handler)
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
