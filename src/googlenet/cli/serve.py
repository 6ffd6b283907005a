"""Serving: `googlenet serve`, the classifier (and a detector) behind an HTTP API and a web page."""

from __future__ import annotations

import argparse
import json
import os
import socket


def serve(a: argparse.Namespace) -> None:
    """Load the model(s), then answer HTTP requests until stopped (Ctrl-C, SIGTERM)."""
    try:
        import uvicorn

        from googlenet.serve.app import ENVIRONMENT, Limits, build
    except ImportError as err:
        raise ValueError(f"googlenet serve needs {err.name}: pip install 'googlenet[serve]'") from None
    if a.workers < 1:
        raise ValueError("--workers must be at least 1")
    _check_port(a.host, a.port)  # before the model loads: a busy port is one line, not uvicorn's log and exit 3
    options = dict(
        checkpoint=a.checkpoint,
        detector=a.detector,
        device=a.device,
        max_batch=a.max_batch,
        max_wait_ms=a.max_wait_ms,
        limits=dict(max_bytes=a.max_bytes, max_pixels=a.max_pixels, timeout_s=a.timeout),
    )
    if a.workers == 1:
        app = build(**{**options, "limits": Limits(**options["limits"])})
        uvicorn.run(app, host=a.host, port=a.port, log_level=a.log_level)
        return
    os.environ[ENVIRONMENT] = json.dumps(options)  # each worker process builds its own app from these
    uvicorn.run(
        "googlenet.serve.app:from_environment", factory=True, host=a.host, port=a.port, workers=a.workers,
        log_level=a.log_level,
    )  # fmt: skip


def _check_port(host: str, port: int) -> None:
    """OSError in one line where `host:port` cannot be listened on (in use, not this machine's address, no
    permission), found by binding it as uvicorn will (SO_REUSEADDR, as uvicorn sets)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, _, _, address = addresses[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as err:
        reason = err.strerror or str(err)
        raise OSError(f"cannot listen on {host}:{port}: {reason[0].lower() + reason[1:]}") from None


def add_serve(p: argparse.ArgumentParser) -> None:
    from googlenet.cli.options import add_device_option

    p.description = (
        "Serve a classifier (weights, a run folder, .onnx or TorchScript) over HTTP: POST /v1/classify (image bytes "
        "or a form upload; ?topk=, ?crops=1|2|10|144), POST /v1/detect with --detector, GET /v1/model, GET /healthz, "
        "and a web page at /. Concurrent requests are batched into one forward pass (docs/serving.md)."
    )
    p.add_argument("--checkpoint", required=True, help="the classifier: weights, a run folder, .onnx or .pt")
    p.add_argument("--detector", help="a region classifier (googlenet detect train) for POST /v1/detect")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument(
        "--workers", type=int, default=1, help="server processes on the one port, each with its own model and batching"
    )
    p.add_argument("--max-batch", type=int, default=16, help="most images in one forward pass")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits for more requests")
    p.add_argument("--max-bytes", type=int, default=20 * 2**20, help="largest request body (413 beyond)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image, width x height (413 beyond)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a request may wait for the model (503)")
    p.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (info: one line per request)",
    )
    add_device_option(p)
    p.set_defaults(run=serve)
