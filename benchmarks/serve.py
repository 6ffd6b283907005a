"""Does the service hold load? N concurrent clients post a photo-sized JPEG to `googlenet serve` on localhost for S
seconds (or a number of requests), with dynamic batching and with batch 1, each on its own server; requests/s, p50
and p99 latency, errors, and the server's memory after the first 200 requests and at the end.

    python benchmarks/serve.py --checkpoint runs/fashion_mnist --clients 8 --requests 2000 --json
    python benchmarks/serve.py --quick --json        # an untrained 224 model, 8 clients, 400 requests each way
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from PIL import Image


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _start(checkpoint: str, max_batch: int, device: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "googlenet", "serve", "--checkpoint", checkpoint, "--port", str(port)]
    command += ["--max-batch", str(max_batch), "--device", device]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


def load(url: str, body: bytes, clients: int, requests: int, seconds: float, pid: int) -> dict:
    """`clients` threads posting `body` until `requests` are done or `seconds` pass."""
    latencies: list[float] = []
    errors, lock, memory = [0], threading.Lock(), {}
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if len(latencies) + errors[0] >= requests:
                    return
            start = time.perf_counter()
            request = urllib.request.Request(
                f"{url}/v1/classify", data=body, method="POST", headers={"Content-Type": "image/jpeg"}
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as answer:
                    ok = answer.status == 200 and "predictions" in json.loads(answer.read())
            except OSError:
                ok = False
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[0] += 1
                if len(latencies) == 200 and "after_200_mb" not in memory:
                    memory["after_200_mb"] = round(_rss_mb(pid), 1)

    memory["before_mb"] = round(_rss_mb(pid), 1)
    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - began
    memory["after_mb"] = round(_rss_mb(pid), 1)
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": errors[0],
        "requests_per_s": round(len(latencies) / took, 2),
        "p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1) if ordered else None,
        "seconds": round(took, 1),
        **memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="the model to serve (default: an untrained googlenet_bn at 224)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000, help="requests per setting (stops earlier at --seconds)")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--max-batch", type=int, default=16, help="the batched setting's largest batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="400 requests per setting")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    if args.quick:
        args.requests = 400
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if checkpoint is None:
            import googlenet

            model = googlenet.build_model("googlenet_bn", num_classes=1000, aux=False)
            checkpoint = str(googlenet.save_weights(model, Path(tmp) / "model.safetensors", model.meta))
        photo = io.BytesIO()
        Image.effect_mandelbrot((500, 375), (-2, -1.2, 1, 1.2), 60).convert("RGB").save(photo, "JPEG", quality=90)
        result: dict = {"clients": args.clients, "checkpoint": args.checkpoint or "untrained googlenet_bn, 224"}
        for name, batch in (("batched", args.max_batch), ("batch_1", 1)):
            process, url = _start(checkpoint, batch, args.device)
            try:
                result[name] = load(url, photo.getvalue(), args.clients, args.requests, args.seconds, process.pid)
                with urllib.request.urlopen(f"{url}/v1/model") as answer:
                    result[name]["mean_batch"] = json.loads(answer.read())["mean_batch"]
            finally:
                process.terminate()
                process.wait(timeout=30)
    result["speedup"] = round(result["batched"]["requests_per_s"] / result["batch_1"]["requests_per_s"], 2)
    if not args.json:
        for name in ("batched", "batch_1"):
            r = result[name]
            print(
                f"{name}: {r['requests_per_s']} requests/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                f"{r['errors']} errors, memory {r['after_200_mb']} -> {r['after_mb']} MB",
                file=sys.stderr,
            )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
