"""`serve --workers N`: N server processes, each with its own listening socket on the same
port (SO_REUSEPORT), so the kernel spreads connections evenly over them, a burst of
keep-alive connections included. With one socket shared by all workers (uvicorn's own
`workers`), a burst went to whichever worker woke first: two workers served 16 connections
opened at once no faster than one.

The parent only supervises: it replaces a worker that dies and, on SIGTERM or SIGINT, passes
SIGTERM on and waits while each worker drains for its `shutdown_seconds`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import uvicorn

from app.logging import configure_logging

log = logging.getLogger(__name__)

APP = "app.main:app_from_config"  # each worker builds its app from PATIENTGRAPH_CONFIG
SUPERVISE_SECONDS = 0.5  # how often the parent looks for dead workers
EXIT_GRACE_SECONDS = 5  # past shutdown_seconds, before a worker still running is killed


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port that other workers may bind as well."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(host: str, port: int, options: dict[str, Any], parent: int) -> None:
    configure_logging()
    threading.Thread(target=_drain_when_orphaned, args=(parent,), daemon=True).start()
    config = uvicorn.Config(APP, factory=True, **options)
    uvicorn.Server(config).run(sockets=[bind(host, port)])


def _drain_when_orphaned(parent: int) -> None:
    """A parent killed outright (SIGKILL, the OOM killer) cannot stop its workers: each one
    notices it has a new parent and stops itself, draining as on SIGTERM, rather than
    serving on unsupervised."""
    while os.getppid() == parent:
        time.sleep(SUPERVISE_SECONDS)
    log.warning("the supervising process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)


def serve_workers(
    count: int, host: str, port: int, shutdown_seconds: int, options: dict[str, Any]
) -> int:
    """Run `count` workers until SIGTERM or SIGINT; `options` go to each uvicorn.Config."""
    bind(host, port).close()  # a port already taken fails here, once, not in every worker
    context = multiprocessing.get_context("spawn")
    options = {**options, "timeout_graceful_shutdown": shutdown_seconds}

    def start() -> BaseProcess:
        process = context.Process(
            target=_worker, args=(host, port, options, os.getpid()), daemon=False
        )
        process.start()
        return process

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    workers = [start() for _ in range(count)]
    log.info("started %d workers on %s:%d", count, host, port)
    while not stop.wait(SUPERVISE_SECONDS):
        for n, worker in enumerate(workers):
            if not worker.is_alive():
                log.warning("worker %d exited with %s; starting another", n, worker.exitcode)
                workers[n] = start()
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            worker.terminate()  # SIGTERM: the worker drains, then exits
    for worker in workers:
        worker.join(shutdown_seconds + EXIT_GRACE_SECONDS)
        if worker.is_alive():
            worker.kill()
            worker.join()
    return 0
