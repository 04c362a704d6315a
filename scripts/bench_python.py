"""Python's own logging.handlers.HTTPHandler, timed the way examples/loadgen.rs times
http-logger: one `logger.info(...)` call after another, each timed with perf_counter_ns.

    python3 scripts/bench_python.py HOST:PORT [RECORDS] [post|get]

The handler sends each record synchronously over a new connection, so the records are
delivered when the last call returns: the delivery rate is RECORDS over the time of all the
calls. Prints `key: value` lines, as loadgen does. Standard library only.
"""

import logging
import logging.handlers
import sys
import time


def quantile(sorted_values, q):
    if not sorted_values:
        return 0
    return sorted_values[round((len(sorted_values) - 1) * q)]


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    host = sys.argv[1]
    records = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    method = (sys.argv[3] if len(sys.argv) > 3 else "post").upper()

    errors = 0

    class CountingHandler(logging.handlers.HTTPHandler):
        def handleError(self, record):
            nonlocal errors
            errors += 1

    logger = logging.getLogger("loadgen")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(CountingHandler(host, "/", method=method))

    names = ["ann", "bob", "carmen", "dmitri"]
    # A few calls first: imports, the first connection.
    for i in range(20):
        logger.info("user %s logged in after %d tries", names[i % 4], i)

    pair = []
    for _ in range(100_001):
        before = time.perf_counter_ns()
        pair.append(time.perf_counter_ns() - before)
    pair.sort()
    pair_ns = quantile(pair, 0.5)

    calls = [0] * records
    errors = 0
    start = time.perf_counter_ns()
    for i in range(records):
        before = time.perf_counter_ns()
        logger.info("user %s logged in after %d tries", names[i % 4], i)
        calls[i] = time.perf_counter_ns() - before
    total = (time.perf_counter_ns() - start) / 1e9
    calls.sort()

    print("mode: python")
    print(f"python: {sys.version.split()[0]}")
    print(f"records: {records}")
    print(f"method: {method.lower()}")
    print(f"perf_counter_pair_ns: {pair_ns}")
    print(f"call_median_ns: {max(quantile(calls, 0.5) - pair_ns, 0)}")
    print(f"call_p99_ns: {max(quantile(calls, 0.99) - pair_ns, 0)}")
    print(f"call_max_ns: {max(calls[-1] - pair_ns, 0)}")
    print(f"total_s: {total:.3f}")
    print(f"delivered_per_s: {(records - errors) / total:.0f}")
    print(f"errors: {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
