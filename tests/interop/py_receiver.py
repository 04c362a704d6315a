#!/usr/bin/env python3
"""A receiver for logging.handlers.HTTPHandler records, written as a Python user would.

Usage: python3 tests/interop/py_receiver.py --port 0 [--exit-on-stdin-eof]
                                           [--certfile CERT.pem [--keyfile KEY.pem]]

Binds 127.0.0.1 (port 0 picks a free port), prints "listening on http://127.0.0.1:PORT" on
stderr once bound, answers every GET and POST with 200 and an empty body (HTTP/1.1, keep-alive),
and prints one JSON line (ASCII) per request on stdout, before the reply is written:

  {"method": "POST", "path": "/log?x=y", "status": 200,
   "headers": {"host": "...", ...},          # names lowercased; repeated headers joined by ", "
   "fields": [["name", "demo"], ...],        # every decoded key/value, in order, as strings
   "record": {"message", "name", "levelno", "levelname", "lineno", "created", "msecs",
              "relativeCreated", "process", "thread", "threadName", "processName",
              "exc_text", "stack_info", "formatted", "format_error"} or null,
   "error": null or "what made it not a record"}

The fields come from the POST body, or for any other method from the query after the first
"?" (query parameters that were already in the URL, like src=app, are fields too). A record
is rebuilt the way a receiver would: the first value of each field; levelno, lineno, process,
thread to int; created, msecs, relativeCreated to float; "None" to None for exc_info, exc_text,
stack_info, taskName; args to (); logging.makeLogRecord. The 20 fields every Python version
sends (name ... process, taskName excepted) are required. Percent-decoded bytes must be UTF-8
(decoded strictly, so a bad encoder shows up as an error instead of U+FFFD). "formatted" is
Formatter('%(asctime)s %(name)s %(levelname)s %(message)s %(lineno)d').format(record) (asctime
in local time); if formatting raises, it is null and "format_error" says why.

A request that is not a record still gets a line ("record": null) and a 200. A request the
http.server machinery itself rejects (e.g. a request line over 65536 bytes: 414) gets a line
with that "status" and "error". Runs on Python 3.8 to 3.13, standard library only.

With --certfile (the server's certificate chain, PEM) and --keyfile (its private key, PEM; by
default also read from the certfile), it serves HTTPS instead: each accepted connection is wrapped
with ssl (ssl.SSLContext(PROTOCOL_TLS_SERVER).load_cert_chain, no client certificate asked for)
in its own handler thread, the first stderr line says "listening on https://127.0.0.1:PORT", and
a failed handshake prints one "TLS handshake failed: ..." line on stderr (no stdout line: it
was not a request). Everything else is the same.
"""
import argparse
import json
import logging
import math
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl

REQUIRED = (
    'name', 'msg', 'args', 'levelname', 'levelno', 'pathname', 'filename', 'module',
    'exc_info', 'exc_text', 'stack_info', 'lineno', 'funcName', 'created', 'msecs',
    'relativeCreated', 'thread', 'threadName', 'processName', 'process',
)
INTS = ('levelno', 'lineno', 'process', 'thread')
FLOATS = ('created', 'msecs', 'relativeCreated')
NONES = ('exc_info', 'exc_text', 'stack_info', 'taskName')
FORMATTER = logging.Formatter('%(asctime)s %(name)s %(levelname)s %(message)s %(lineno)d')
OUT = threading.Lock()


def _qs_options():
    opts = {'keep_blank_values': True, 'encoding': 'utf-8', 'errors': 'strict'}
    try:  # only '&' separates (the default since 3.8.8/3.9.2; older versions also split on ';')
        parse_qsl('a=1', separator='&')
        opts['separator'] = '&'
    except TypeError:
        pass
    return opts


QS = _qs_options()


def decode(raw):
    """(ordered pairs, dict of lists, error) for a form-urlencoded str."""
    try:
        pairs = parse_qsl(raw, **QS)
        as_dict = parse_qs(raw, **QS)
    except UnicodeDecodeError as e:
        loose = dict(QS, errors='replace')
        return parse_qsl(raw, **loose), None, 'invalid UTF-8 in percent-encoded data: %s' % e
    grouped = {}
    for k, v in pairs:
        grouped.setdefault(k, []).append(v)
    if grouped != as_dict:
        return pairs, None, 'parse_qs and parse_qsl disagree'
    return pairs, as_dict, None


def rebuild(fields):
    """(record dict for the JSON line, None) or (None, error)."""
    missing = [k for k in REQUIRED if k not in fields]
    if missing:
        return None, 'missing fields: ' + ', '.join(missing)
    d = {k: v[0] for k, v in fields.items()}
    for k in INTS:
        try:
            d[k] = int(d[k])
        except ValueError as e:
            return None, '%s: %s' % (k, e)
    for k in FLOATS:
        try:
            d[k] = float(d[k])
        except ValueError as e:
            return None, '%s: %s' % (k, e)
        if not math.isfinite(d[k]):
            return None, '%s: not finite: %r' % (k, d[k])
    for k in NONES:
        if d.get(k) == 'None':
            d[k] = None
    d['args'] = ()
    try:
        rec = logging.makeLogRecord(d)
        out = {
            'message': rec.getMessage(), 'name': rec.name, 'levelno': rec.levelno,
            'levelname': rec.levelname, 'lineno': rec.lineno, 'created': rec.created,
            'msecs': rec.msecs, 'relativeCreated': rec.relativeCreated,
            'process': rec.process, 'thread': rec.thread, 'threadName': rec.threadName,
            'processName': rec.processName, 'exc_text': rec.exc_text,
            'stack_info': rec.stack_info,
        }
    except Exception as e:  # e.g. a key-value named getMessage shadows the method
        return None, 'makeLogRecord: %r' % (e,)
    try:
        out['formatted'], out['format_error'] = FORMATTER.format(rec), None
    except Exception as e:  # e.g. Python's own exc_info repr with exc_text None
        out['formatted'], out['format_error'] = None, repr(e)
    return out, None


def emit(obj):
    line = json.dumps(obj, ensure_ascii=True)
    with OUT:
        try:
            sys.stdout.write(line + '\n')
            sys.stdout.flush()
        except (OSError, ValueError):
            pass  # nobody reads stdout any more; keep answering


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'py_receiver/1'

    def log_message(self, format, *args):
        pass  # no access log on stderr

    def headers_dict(self):
        out = {}
        for k, v in (self.headers.items() if getattr(self, 'headers', None) else ()):
            k = k.lower()
            out[k] = out[k] + ', ' + v if k in out else v
        return out

    def send_error(self, code, message=None, explain=None):
        # Rejected by http.server before a do_* method ran: still one line per request.
        emit({'method': getattr(self, 'command', None), 'path': getattr(self, 'path', None),
              'status': code, 'headers': self.headers_dict(), 'fields': [], 'record': None,
              'error': 'http.server rejected the request: %d %s'
                       % (code, message or self.responses.get(code, ('',))[0])})
        BaseHTTPRequestHandler.send_error(self, code, message, explain)

    def read_body(self):
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            body = b''
            while True:
                size = int(self.rfile.readline().split(b';')[0].strip() or b'x', 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get('Content-Length') or 0)
        body = self.rfile.read(length)
        if len(body) != length:
            raise EOFError('body cut short: %d of %d bytes' % (len(body), length))
        return body

    def handle_record(self, body):
        error, pairs, record = None, [], None
        if body is None:
            raw = self.path.split('?', 1)[1] if '?' in self.path else ''
        else:
            try:
                raw = body.decode('utf-8')
            except UnicodeDecodeError as e:
                raw, error = body.decode('utf-8', 'replace'), 'body is not UTF-8: %s' % e
        pairs, fields, decode_error = decode(raw)
        error = error or decode_error
        if error is None:
            record, error = rebuild(fields)
        emit({'method': self.command, 'path': self.path, 'status': 200,
              'headers': self.headers_dict(), 'fields': [[k, v] for k, v in pairs],
              'record': record, 'error': error})
        # No body: HTTPHandler never reads one, and closing with it unread would send a RST.
        self.send_response(200)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def do_GET(self):
        self.handle_record(None)

    def do_POST(self):
        try:
            body = self.read_body()
        except (ValueError, EOFError) as e:
            self.close_connection = True
            self.send_error(400, 'bad body: %s' % e)
            return
        self.handle_record(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    ssl_context = None  # an ssl.SSLContext to serve HTTPS

    def finish_request(self, request, client_address):
        # Runs in the connection's own thread: a slow handshake holds up no other client.
        if self.ssl_context is None:
            ThreadingHTTPServer.finish_request(self, request, client_address)
            return
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with OUT:
                sys.stderr.write('TLS handshake failed: %s\n' % (e,))
                sys.stderr.flush()
            return
        try:
            ThreadingHTTPServer.finish_request(self, tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client went away: fine
            ThreadingHTTPServer.handle_error(self, request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--port', type=int, default=0, help='port on 127.0.0.1 (0: any free port)')
    ap.add_argument('--exit-on-stdin-eof', action='store_true',
                    help='exit when stdin reaches EOF (spawn with a piped stdin so the '
                         'receiver dies with the test process)')
    ap.add_argument('--certfile', help='serve HTTPS with this certificate chain (PEM)')
    ap.add_argument('--keyfile', help="the certificate's private key (PEM; default: in certfile)")
    args = ap.parse_args()
    if args.keyfile and not args.certfile:
        ap.error('--keyfile needs --certfile')
    context = None
    if args.certfile:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.certfile, args.keyfile)
    server = Server(('127.0.0.1', args.port), Handler)
    server.ssl_context = context
    scheme = 'https' if context else 'http'
    sys.stderr.write('listening on %s://127.0.0.1:%d\n' % (scheme, server.server_address[1]))
    sys.stderr.flush()
    if args.exit_on_stdin_eof:
        def watch():
            while sys.stdin.buffer.read(65536):
                pass
            server.shutdown()
        threading.Thread(target=watch, daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == '__main__':
    main()
