"""The HTTP service (FastAPI on uvicorn): classification with concurrent requests batched on the inference model,
detection, the weights' record, a health check and a web page; every refused request is a 4xx with one line."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException

from googlenet.data.images import UnreadableImage, image_from_bytes
from googlenet.data.multicrop import CropSpec
from googlenet.evaluate.multicrop import CropEnsemble
from googlenet.model.loading import Classifier, load_for_inference

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff")
RAW_TYPES = (*IMAGE_TYPES, "application/octet-stream")
CROPS = (1, 2, 10, 144)


@dataclass
class Limits:
    """What one request may ask for; beyond it, a 4xx."""

    max_bytes: int = 20 * 2**20  # the body (413 beyond)
    max_pixels: int = 40_000_000  # the image's width x height, read from its header before decoding (413)
    timeout_s: float = 30.0  # waiting for the model (503 when the queue is too long to answer in time)
    max_topk: int = 1000


class Refused(Exception):
    """A request the service will not answer: its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Job:
    crops: torch.Tensor  # (n, 3, S, S)
    weights: torch.Tensor  # (n,)
    done: asyncio.Future = field(repr=False)


class Batcher:
    """Requests' crops gathered into one forward pass: the first waiting job opens a batch, which takes whatever
    arrives within `max_wait_s` up to `max_batch` images; the model runs in a worker thread (torch releases the GIL),
    so requests keep arriving meanwhile. Each job gets its images' class probabilities (softmax averaged over its
    crops)."""

    def __init__(self, model: Classifier, device: torch.device, max_batch: int = 16, max_wait_s: float = 0.005):
        self.ensemble = CropEnsemble([model], "mean", device)
        self.max_batch, self.max_wait_s = max(1, max_batch), max_wait_s
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="googlenet-model")
        self.batches: deque[int] = deque(maxlen=1000)  # the images of the last batches run, for /v1/model
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, crops: torch.Tensor, weights: torch.Tensor, timeout_s: float) -> torch.Tensor:
        job = _Job(crops, weights, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        try:
            return await asyncio.wait_for(asyncio.shield(job.done), timeout_s)
        except TimeoutError:
            raise Refused(503, f"the model did not answer within {timeout_s:g} s; try again") from None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(jobs) < self.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            try:
                probs = await loop.run_in_executor(self.pool, self._forward, jobs)
            except Exception as err:  # the model failed: each waiting request hears it, the service goes on
                for job in jobs:
                    if not job.done.done():
                        job.done.set_exception(err)
                continue
            for job, p in zip(jobs, probs, strict=True):
                if not job.done.done():
                    job.done.set_result(p)

    def _forward(self, jobs: list[_Job]) -> list[torch.Tensor]:
        crops = torch.cat([j.crops for j in jobs])
        weights = torch.cat([j.weights for j in jobs])
        owner = torch.cat([torch.full((len(j.weights),), k, dtype=torch.long) for k, j in enumerate(jobs)])
        self.batches.append(len(jobs))
        probs = self.ensemble((crops, weights, owner, torch.full((len(jobs),), -1)))  # (models=1, jobs, classes)
        return list(probs[0])


@dataclass
class Service:
    """What the app serves: the classifier (any file `load_for_inference` reads), its crops and batcher, an
    optional detector, the limits."""

    model: Classifier
    batcher: Batcher
    limits: Limits
    detector: Any = None  # a googlenet.detect.detector.Detector
    specs: dict[int, CropSpec] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def spec(self, crops: int) -> CropSpec:
        if crops not in self.specs:
            self.specs[crops] = CropSpec.of([self.model], crops)
        return self.specs[crops]


def _image(body: bytes, limits: Limits) -> Image.Image:
    """The upload decoded, its pixel count checked from the header first (a decompression bomb is never decoded)."""
    if not body:
        raise Refused(400, "the request has no image (empty body)")
    try:
        with Image.open(io.BytesIO(body)) as header:
            width, height = header.size
    except Image.DecompressionBombError as err:  # Pillow's own limit (2 x MAX_IMAGE_PIXELS), checked on opening
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(pixels.group(1)):,} pixels" if pixels else "more pixels than Pillow opens"
        raise Refused(413, f"the image has {size}, more than the limit of {limits.max_pixels:,}") from None
    except Exception:  # decoded below for the one-line reason
        width = height = 0
    if width * height > limits.max_pixels:
        raise Refused(413, f"the image has {width}x{height} pixels, more than the limit of {limits.max_pixels:,}")
    try:
        return image_from_bytes(body)
    except UnreadableImage as err:
        raise Refused(400, str(err)) from None


async def _body(request: Request, limits: Limits) -> bytes:
    """The uploaded image's bytes: the raw body (an image/* or application/octet-stream type), or the first file
    of a multipart/form-data upload; over limits.max_bytes is refused before it is all read."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_bytes:
        raise Refused(413, f"the body has {int(declared):,} bytes, more than the limit of {limits.max_bytes:,}")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in (*RAW_TYPES, "multipart/form-data"):
        raise Refused(
            415, f"content type {kind or 'none'!r} is not an image: send image/jpeg, image/png, ... or a form upload"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_bytes:
            raise Refused(413, f"the body has more than the limit of {limits.max_bytes:,} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if kind != "multipart/form-data":
        return body
    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartParser

    async def replay():
        yield body

    form = await MultiPartParser(Headers(scope=request.scope), replay()).parse()
    files = [v for v in form.values() if isinstance(v, UploadFile)]
    if not files:
        raise Refused(400, "the form has no file field")
    return await files[0].read()


def _int(request: Request, name: str, default: int, allowed: tuple[int, ...] | range) -> int:
    text = request.query_params.get(name, str(default))
    if not text.isdigit() or int(text) not in allowed:
        shown = ", ".join(map(str, allowed)) if isinstance(allowed, tuple) else f"{allowed.start}-{allowed.stop - 1}"
        raise Refused(400, f"?{name}={text} is not one of {shown}")
    return int(text)


def _answer_errors_in_one_line(app: FastAPI) -> None:
    """Every error status as `{"error": "one line"}`: ours (Refused) and those FastAPI and Starlette give
    themselves (404 unknown path, 405 wrong method, 422)."""

    @app.exception_handler(Refused)
    async def refused(request: Request, err: Refused) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)  # the routes read their own parameters: not expected
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "; ".join(str(e.get("msg", e)) for e in err.errors())}, status_code=422)


def create_app(service: Service) -> FastAPI:
    """The FastAPI app around `service` (its batcher starts with the app)."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.batcher.start()  # on the server's event loop
        yield

    app = FastAPI(
        title="googlenet", summary="GoogLeNet (Szegedy et al., 2014): classification and detection", lifespan=lifespan
    )
    names = service.model.meta.class_names or [str(i) for i in range(service.model.meta.num_classes)]

    _answer_errors_in_one_line(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.time() - service.started, 1)}

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        batches = service.batcher.batches
        return {
            **json.loads(service.model.meta.to_json()),
            "detector": None if service.detector is None else service.detector.classes,
            "mean_batch": round(sum(batches) / len(batches), 2) if batches else None,
        }

    @app.post("/v1/classify")
    async def classify(request: Request) -> dict[str, Any]:
        topk = _int(request, "topk", 5, range(1, service.limits.max_topk + 1))
        crops = _int(request, "crops", 1, CROPS)
        image = _image(await _body(request, service.limits), service.limits)
        cut, weights = service.spec(crops)(image)
        probs = await service.batcher.submit(cut, weights, service.limits.timeout_s)
        top = probs.topk(min(topk, len(probs)))
        predictions = [
            {"class": names[i], "index": int(i), "probability": float(p)}
            for p, i in zip(top.values, top.indices, strict=True)
        ]
        return {"predictions": predictions, "crops": crops, "size": list(image.size)}

    @app.post("/v1/detect")
    async def detect(request: Request) -> dict[str, Any]:
        if service.detector is None:
            raise Refused(404, "this server has no detector: start it with --detector")
        image = _image(await _body(request, service.limits), service.limits)
        loop = asyncio.get_running_loop()
        found = await asyncio.wait_for(
            loop.run_in_executor(service.batcher.pool, service.detector.detect, image), service.limits.timeout_s
        )
        return {"detections": found.to_json(service.detector.classes), "size": list(image.size)}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return resources.files("googlenet.serve").joinpath("page.html").read_text()

    return app


ENVIRONMENT = "GOOGLENET_SERVE"  # build()'s arguments as JSON, for each of uvicorn's worker processes


def from_environment() -> FastAPI:
    """The app that `googlenet serve --workers N` starts in each worker process (uvicorn's factory)."""
    options = json.loads(os.environ[ENVIRONMENT])
    return build(**{**options, "limits": Limits(**options["limits"])})


def build(
    checkpoint: str,
    detector: str | None = None,
    device: str = "auto",
    max_batch: int = 16,
    max_wait_ms: float = 5.0,
    limits: Limits | None = None,
) -> FastAPI:
    """The app for `checkpoint` (weights, a run folder, .onnx or TorchScript) and an optional region classifier
    `detector` (its proposals: Selective Search 2x, as `googlenet detect predict` defaults)."""
    from googlenet.evaluate.driver import resolve_device

    where = torch.device(resolve_device(device))
    model = load_for_inference(checkpoint)
    if isinstance(model, torch.nn.Module):
        model = model.to(where)
    found = None
    if detector is not None:
        from googlenet.detect.detector import Detector, DetectorSpec

        found = Detector.load(DetectorSpec(checkpoints=(detector,), device=where.type))
    service = Service(model, Batcher(model, where, max_batch, max_wait_ms / 1000), limits or Limits(), found)
    return create_app(service)
