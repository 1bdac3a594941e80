"""A bare pyzmq + msgpack ROUTER that answers every request like `gateway.ping` does.

It is the floor `bench_ping.py` compares the gateway against: the same socket type, the same
framing and the same MessagePack work per message (decode the request, encode a reply map), and
nothing else — no validation, no routing, no bookkeeping.

    python tools/bench/echo_server.py ipc:///tmp/tbXXXX/echo.sock

Runs in the foreground until SIGTERM or SIGINT. Uses nothing from tek_actors.
"""

from __future__ import annotations

import argparse
import signal
import threading

import msgpack
import zmq

POLL_MS = 100  # how often an idle server checks whether it was asked to stop


def serve(endpoint: str, stop: threading.Event) -> int:
    """Answer requests on `endpoint` until `stop` is set; returns how many were answered."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(endpoint)
    answered = 0
    try:
        while not stop.is_set():
            if not router.poll(POLL_MS, zmq.POLLIN):
                continue
            while True:  # drain whatever is queued before polling again
                try:
                    identity, frame = router.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                request = msgpack.unpackb(frame, raw=False)
                reply = {
                    "v": 1,
                    "re": request.get("id"),
                    "ok": True,
                    "result": {"boot_id": "x", "head_seq": 0},
                }
                router.send_multipart((identity, msgpack.packb(reply, use_bin_type=True)))
                answered += 1
    finally:
        router.close(0)
        ctx.term()
    return answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint", help="where to bind, e.g. ipc:///tmp/tb1234/echo.sock")
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    serve(args.endpoint, stop)


if __name__ == "__main__":
    main()
