"""Inference and training speed on this machine: every path side by side, in one run, on the same weights.

Inference at 224x224, batch 1 and 16: torchvision.models.googlenet eager (channels_last), ours eager
(`googlenet_tv` with torchvision's weights loaded), ours optimised (`optimize_for_inference`), the same under
torch.compile, our TorchScript export run as `googlenet` runs it (oneDNN Graph fuser on), onnxruntime on our export
and on torchvision's model exported the same way, onnxruntime on our int8 export, and ExecuTorch's runtime (XNNPACK
delegate) on our fp32 and int8 .pte programs (where executorch is installed). The paper's own network (`googlenet`:
LRN, true 5x5 convolutions) the same random weights through each of our paths (`paper_*`: what `predict`,
`evaluate`, `serve` and the detector run, compiled, in bfloat16 where oneDNN has bf16 kernels, onnxruntime on our
fp32 and int8 exports) and through the fastest CPU runtimes as peers where they are installed (`pip install -e
'.[bench]'`): OpenVINO on our IR export in f32 and in bf16 (its default where the CPU has it), and ncnn
on pnnx's conversion. OpenVINO runs our own exports (`googlenet export --format openvino`, `openvino_bf16`) as
`googlenet predict`/`evaluate`/`serve` run them. Every path is checked against the eager model (relative
difference of the logits, top-1 agreement) before it is timed. A large matmul probes the machine's peak FLOP/s,
so each path also shows the fraction of that limit it reaches (2 x multiply-adds per image x images/s / peak).
Training: images/s of one SGD step with the auxiliary heads on, ours (`googlenet_bn`, as `googlenet train`
runs it) against torchvision's googlenet, at 224 and at the Fashion-MNIST input size, at equal batch; and the
paper's network with our LRN against the same network with `nn.LocalResponseNorm`.
The process sets up its memory allocation as the `googlenet` command does (`googlenet.cli.memory`).

Each figure is the median of several timed repeats. Prints a Markdown table and writes JSON.

    python benchmarks/inference.py                 # the tables in docs/inference.md (about 18 minutes here)
    python benchmarks/inference.py --quick --json  # fewer repeats (under 3 minutes); one JSON object on stdout
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from googlenet.cli.memory import fast_allocation

fast_allocation()  # as the `googlenet` command does, before torch allocates: every path runs in that process

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

from googlenet import build_model  # noqa: E402
from googlenet.export import write  # noqa: E402
from googlenet.model.formats.executorch import ExecuTorchClassifier, executorch_missing  # noqa: E402
from googlenet.model.formats.onnx import OnnxClassifier, export_onnx, quantize_int8  # noqa: E402
from googlenet.model.formats.openvino import OpenVinoClassifier, openvino_missing  # noqa: E402
from googlenet.model.formats.torchscript import TorchScriptClassifier  # noqa: E402
from googlenet.model.inference import optimize_for_inference  # noqa: E402
from googlenet.model.summary import table1  # noqa: E402
from googlenet.model.weights import ModelMeta, torchvision_to_googlenet  # noqa: E402

PEER_TOLERANCE = 1e-2  # a peer's logits within this of eager's (relative to the largest); ncnn's winograd: 3e-4
# Lower precisions are checked against their own rounding, a wrong path is off by the logits' size: bf16's 8-bit
# significand (on trained weights 7e-3 relative, docs/inference.md) and int8's quantisation (6e-2 there).
LOWER_PRECISION_TOLERANCE = {"bf16": 3e-2, "int8": 1.5e-1}

SIZE, BATCHES = 224, (1, 16)
PYTORCH_PATHS = ("ours_eager", "ours_optimized", "ours_compiled", "ours_torchscript")
PEERS = ("openvino_paper_f32", "ncnn_paper")  # the fp32 peers the paper's default path is measured against


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rate(step: Callable[[], object], items: int, seconds: float) -> float:
    """items/s of `step`, run for at least `seconds`."""
    count, start = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - start < seconds:
        step()
        count += 1
    return count * items / (time.perf_counter() - start)


def median_rates(
    steps: dict[str, Callable[[], object]], items: int, repeats: int, seconds: float, warmup: int = 1
) -> dict[str, float]:
    """Median items/s of each step over `repeats` rounds, after `warmup` calls each. The steps take turns
    within every round, so a slow spell of the machine (another job) hits them all alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            rates[name].append(rate(step, items, seconds))
    return {name: statistics.median(r) for name, r in rates.items()}


def peak_gflops(repeats: int, n: int = 2048) -> float:
    """The machine's practical fp32 limit: GFLOP/s of an n x n matmul (2 n^3 flops), median of `repeats`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return median_rates({"mm": lambda: torch.mm(a, b)}, 1, repeats, 0.5)["mm"] * 2 * n**3 / 1e9


def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """torchvision's googlenet (fresh init, no aux heads) and ours with exactly its weights."""
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True).eval()
    ours = build_model("googlenet_tv", num_classes=1000, aux=False)
    ours.load_state_dict(torchvision_to_googlenet(tv.state_dict()))
    ours.meta = ModelMeta(variant="googlenet_tv", num_classes=1000)  # what the exports carry
    return tv, ours.eval()


def paper_model() -> torch.nn.Module:
    """The paper's network (LRN, true 5x5s), 1,000 classes, Caffe's initialisation from seed 0."""
    torch.manual_seed(0)
    paper = build_model("googlenet", num_classes=1000, aux=False).eval()
    paper.meta = ModelMeta(variant="googlenet", num_classes=1000)
    return paper


def paper_paths(paper: torch.nn.Module, folder: Path, example: torch.Tensor) -> dict:
    """name -> model for the paper's network: our default inference model, compiled, in bfloat16 (where oneDNN
    has bf16 kernels: elsewhere it is emulated), onnxruntime on our fp32 export and on our int8 export (calibrated
    on random images: its speed only; its accuracy on trained weights is in docs/inference.md)."""
    write(paper, "onnx", folder / "paper.onnx", example)
    write(paper, "onnx", folder / "paper.int8.onnx", example, torch.randn(64, 3, SIZE, SIZE))
    paths = {
        "paper_optimized": optimize_for_inference(paper),
        "paper_compiled": torch.compile(optimize_for_inference(paper), options={"cpp_wrapper": True}),
        "onnxruntime_paper": OnnxClassifier(folder / "paper.onnx"),
        "onnxruntime_paper_int8": OnnxClassifier(folder / "paper.int8.onnx"),
    }
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        paths["paper_bf16"] = optimize_for_inference(paper, dtype=torch.bfloat16)
    else:
        log("no paper_bf16 row: this CPU has no bfloat16 kernels for oneDNN (AVX512-BF16 or AMX)")
    return paths


class NcnnModel:
    """ncnn in fp32 on pnnx's conversion of a model traced at batch 1 (pnnx's default stores fp16 weights, ncnn's
    computes in fp16/bf16 where the CPU has it: both off, as OpenVINO's f32 row); a batch runs image by image, as
    ncnn runs. Its own choice of kernels (Winograd, sgemm) is left on."""

    def __init__(self, model: torch.nn.Module, folder: Path) -> None:
        import ncnn
        import pnnx

        folder.mkdir(parents=True, exist_ok=True)
        pnnx.export(model, str(folder / "paper.pt"), (torch.randn(1, 3, SIZE, SIZE),), fp16=False)  # paper.ncnn.*
        self.net = ncnn.Net()
        self.net.opt.num_threads = torch.get_num_threads()
        for reduced in ("fp16_storage", "fp16_packed", "fp16_arithmetic", "bf16_storage", "bf16_packed"):
            setattr(self.net.opt, f"use_{reduced}", False)
        self.net.load_param(str(folder / "paper.ncnn.param"))
        self.net.load_model(str(folder / "paper.ncnn.bin"))
        self.mat = ncnn.Mat

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        logits = []
        for image in images.contiguous().numpy():
            extractor = self.net.create_extractor()
            extractor.input("in0", self.mat(image))
            logits.append(torch.from_numpy(np.array(extractor.extract("out0")[1])))
        return torch.stack(logits)


def peer_paths(paper: torch.nn.Module, folder: Path) -> dict:
    """name -> the fastest CPU runtimes on the paper's network, where installed: OpenVINO in f32 and in bf16 (its
    default where the CPU has bf16 kernels, f32 elsewhere) on our `--format openvino` and `openvino_bf16` exports
    (IR converted from our ONNX graph), run as `googlenet` runs them; ncnn through pnnx (as ONNX: BatchNorm folded,
    branches apart, plain memory format)."""
    paths: dict = {}
    if openvino_missing():
        log("no OpenVINO rows: pip install -e '.[bench]'")
    else:  # our exports, as `googlenet export --format openvino / openvino_bf16` write them and the commands run them
        example = torch.randn(2, 3, SIZE, SIZE)
        f32 = write(paper, "openvino", folder / "paper.openvino.xml", example)
        paths["openvino_paper_f32"] = OpenVinoClassifier(f32)
        bf16 = write(paper, "openvino_bf16", folder / "paper.bf16.openvino.xml", example)
        paths["openvino_paper_default"] = OpenVinoClassifier(bf16)
    try:
        plain = optimize_for_inference(paper, channels_last=False, fuse_1x1=False)
        paths["ncnn_paper"] = NcnnModel(plain, folder / "ncnn")
    except ImportError:
        log("no ncnn rows: pip install -e '.[bench]'")
    return paths


def check_paths(paths: dict, eager: dict[str, torch.nn.Module]) -> dict:
    """Each path's logits against its eager model's on 4 random images: relative difference and top-1 agreement;
    a path beyond PEER_TOLERANCE (a bf16 or int8 path: LOWER_PRECISION_TOLERANCE) is reported and left out."""
    x = torch.randn(4, 3, SIZE, SIZE)
    checks = {}
    with torch.inference_mode():
        reference = {name: model(x) for name, model in eager.items()}
        for name in list(paths):
            expected = reference["paper" if "paper" in name else "ours"]
            got = torch.cat([paths[name](image[None]) for image in x]).reshape(expected.shape).float()
            relative = float((got - expected).abs().max() / expected.abs().max().clamp_min(1))
            agreement = float((got.argmax(1) == expected.argmax(1)).float().mean())
            checks[name] = {"relative_diff": relative, "top1_agreement": agreement}
            tolerance = next((t for kind, t in LOWER_PRECISION_TOLERANCE.items() if kind in name), PEER_TOLERANCE)
            if relative > tolerance:
                log(f"{name} left out: its logits are {relative:.2e} (relative) off eager's (over {tolerance})")
                del paths[name]
    return checks


def pytorch_paths(tv: torch.nn.Module, ours: torch.nn.Module, folder: Path, example: torch.Tensor) -> dict:
    """name -> model (images -> logits) for each PyTorch path; channels_last everywhere."""
    optimized = optimize_for_inference(ours)
    # Inductor's freezing (constant weights, oneDNN-prepacked convolutions) must be set in its global config:
    # torch.compile(..., options={"freezing": True}) compiles without it (no mkldnn::_convolution_pointwise
    # in the profile, 5% slower here). cpp_wrapper: the graph's kernels are called from C++, not Python
    # (3-5% at batch 1 here, where about 60 convolutions take 20-25 ms).
    torch._inductor.config.freezing = True
    write(ours, "torchscript", folder / "ours.torchscript.pt", example)  # as `googlenet export` writes it
    return {
        "torchvision_eager": tv.to(memory_format=torch.channels_last),
        "ours_eager": ours.to(memory_format=torch.channels_last),
        "ours_optimized": optimized,
        "ours_compiled": torch.compile(optimized, options={"cpp_wrapper": True}),
        "ours_torchscript": TorchScriptClassifier(folder / "ours.torchscript.pt"),
    }


def onnx_paths(tv: torch.nn.Module, ours: torch.nn.Module, folder: Path, example: torch.Tensor) -> dict:
    """name -> onnxruntime model for our export, torchvision's exported the same way, and our int8 export
    (calibrated on random images: these weights are untrained, so only its speed means anything here)."""
    write(ours, "onnx", folder / "ours.onnx", example)  # as `googlenet export` writes it
    export_onnx(tv, folder / "torchvision.onnx", example, ours.meta)
    quantize_int8(folder / "ours.onnx", folder / "ours_int8.onnx", torch.randn(64, 3, SIZE, SIZE).split(16))
    names = {"onnxruntime_ours": "ours", "onnxruntime_torchvision": "torchvision", "onnxruntime_ours_int8": "ours_int8"}
    return {name: OnnxClassifier(folder / f"{file}.onnx") for name, file in names.items()}


def executorch_paths(ours: torch.nn.Module, folder: Path, example: torch.Tensor) -> dict:
    """name -> ExecuTorch program for our fp32 and int8 exports, as `googlenet export --format executorch` writes
    them (int8 calibrated on random images, as for onnxruntime's); none where executorch is not installed."""
    if executorch_missing():
        log(f"no ExecuTorch rows: {executorch_missing()}")
        return {}
    write(ours, "executorch", folder / "ours.pte", example)
    write(ours, "executorch", folder / "ours_int8.pte", example, torch.randn(64, 3, SIZE, SIZE))
    return {
        "executorch_ours": ExecuTorchClassifier(folder / "ours.pte"),
        "executorch_ours_int8": ExecuTorchClassifier(folder / "ours_int8.pte"),
    }


def inference(paths: dict[str, Callable], macs: int, peak: float, repeats: int, seconds: float) -> dict:
    """images/s, GFLOP/s and fraction of peak of every path at every batch size, plus `ours_best`."""
    results: dict[str, dict[str, dict]] = {name: {} for name in paths}
    for batch in BATCHES:
        x = torch.randn(batch, 3, SIZE, SIZE)
        steps = {}
        for name, model in paths.items():  # PyTorch paths get channels_last input, the runtimes plain NCHW
            plain = name.startswith(("onnxruntime", "executorch", "openvino", "ncnn"))
            images = x if plain else x.contiguous(memory_format=torch.channels_last)
            steps[name] = lambda m=model, i=images: m(i)
        with torch.inference_mode():  # 3 warm-up calls: TorchScript profiles twice, then compiles
            rates = median_rates(steps, batch, repeats, seconds, warmup=3)
        for name, images_per_s in rates.items():
            gflops = images_per_s * 2 * macs / 1e9
            record = {
                "images_per_s": round(images_per_s, 2),
                "gflops": round(gflops, 1),
                "fraction_of_peak": gflops / peak,
            }
            results[name][str(batch)] = record
            log(f"{name:>26} batch {batch:>2}: {images_per_s:7.1f} images/s")
    results = {name: r for name, r in results.items() if r}
    results["ours_best"] = {}
    for batch in map(str, BATCHES):
        best = max(PYTORCH_PATHS, key=lambda p: results[p][batch]["images_per_s"])
        results["ours_best"][batch] = {**results[best][batch], "path": best}
    return results


def train_step(model: torch.nn.Module, size: int, batch: int, ours: bool, channels_last: bool) -> Callable[[], None]:
    """One SGD step with the auxiliary losses weighted 0.3 (section 5), on a fixed random batch."""
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch, 3, size, size).contiguous(memory_format=memory)
    targets = torch.randint(0, 10, (batch,))

    def step() -> None:
        out = model(images, return_aux=True) if ours else model(images)
        main, aux1, aux2 = (out.logits, out.aux1, out.aux2) if ours else out
        loss = F.cross_entropy(main, targets) + 0.3 * (F.cross_entropy(aux1, targets) + F.cross_entropy(aux2, targets))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def training(sizes: dict[int, int], repeats: int, seconds: float) -> dict:
    """Training images/s per input size of ours (`googlenet_bn`, channels_last as `googlenet train` runs it),
    of ours built as torchvision's network (`googlenet_tv`: its 5x5 branches are 3x3, 5% fewer multiply-adds
    at 224) and of torchvision's googlenet as it comes and in channels_last; 10 classes, aux heads on."""
    results = {}
    for size, batch in sizes.items():
        torch.manual_seed(0)
        steps = {
            "ours": train_step(build_model("googlenet_bn", num_classes=10), size, batch, True, True),
            "ours_tv_network": train_step(build_model("googlenet_tv", num_classes=10), size, batch, True, True),
            "torchvision": train_step(_tv_train(), size, batch, False, False),
            "torchvision_channels_last": train_step(_tv_train(), size, batch, False, True),
        }
        record = {"batch": batch, **{k: round(v, 2) for k, v in median_rates(steps, batch, repeats, seconds).items()}}
        record["ratio"] = round(record["ours"] / record["torchvision"], 3)
        record["ratio_channels_last"] = round(record["ours"] / record["torchvision_channels_last"], 3)
        record["ratio_same_network"] = round(record["ours_tv_network"] / record["torchvision_channels_last"], 3)
        paper = {  # the paper's network as configs/fashion_mnist_paper.yaml trains it, its LRN ours and PyTorch's
            "paper": train_step(build_model("googlenet", num_classes=10), size, batch, True, True),
            "paper_pytorch_lrn": train_step(
                with_pytorch_lrn(build_model("googlenet", num_classes=10)), size, batch, True, True
            ),
        }
        record.update({k: round(v, 2) for k, v in median_rates(paper, batch, repeats, seconds).items()})
        record["paper_lrn_ratio"] = round(record["paper"] / record["paper_pytorch_lrn"], 3)
        results[str(size)] = record
        log(f"training {size}x{size} batch {batch}: ours {record['ours']} torchvision {record['torchvision']} img/s")
    return results


def with_pytorch_lrn(model: torch.nn.Module) -> torch.nn.Module:
    """The paper's network with nn.LocalResponseNorm (pool in 3-D, pow, divide), as it was before the fast form."""
    for name in ("norm1", "norm2"):
        lrn = getattr(model, name)
        setattr(model, name, torch.nn.LocalResponseNorm(lrn.size, lrn.alpha, lrn.beta, lrn.k))
    return model


def _tv_train() -> torch.nn.Module:
    return torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, num_classes=10)


def _installed(package: str) -> str | None:
    try:
        return version(package)
    except Exception:  # PackageNotFoundError
        return None


def table(report: dict) -> str:
    """The inference results and the training ratios as Markdown."""
    peak, results = report["peak_gflops"], report["results"]
    lines = [
        f"Peak (fp32 matmul): {peak:.0f} GFLOP/s. Images/s at {SIZE}x{SIZE} (GFLOP/s, % of peak):",
        "",
        "| path | batch 1 | batch 16 |",
        "|---|---:|---:|",
    ]
    for name, per_batch in results.items():
        cells = [
            f"{r['images_per_s']:.1f} ({r['gflops']:.0f}, {100 * r['fraction_of_peak']:.0f}%)"
            + (f" = {r['path']}" if "path" in r else "")
            for r in (per_batch[str(b)] for b in BATCHES)
        ]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    ratios = report["ratios"]
    lines += [
        "",
        "Ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()),
        "",
        "Training images/s (one SGD step, aux heads on):",
        "",
        "| input | batch | ours | torchvision | ratio | torchvision channels_last | ratio "
        "| ours as torchvision's network | ratio to torchvision channels_last "
        "| paper's network | with PyTorch's LRN | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, r in report["training"].items():
        lines.append(
            f"| {size}x{size} | {r['batch']} | {r['ours']:.1f} | {r['torchvision']:.1f} | {r['ratio']:.2f}x "
            f"| {r['torchvision_channels_last']:.1f} | {r['ratio_channels_last']:.2f}x "
            f"| {r['ours_tv_network']:.1f} | {r['ratio_same_network']:.2f}x "
            f"| {r['paper']:.1f} | {r['paper_pytorch_lrn']:.1f} | {r['paper_lrn_ratio']:.2f}x |"
        )
    return "\n".join(lines)


def ratios(results: dict) -> dict[str, float]:
    """The issue's comparisons: ours_best / torchvision_eager per batch, our ONNX / torchvision's ONNX,
    int8 / our fastest fp32 path."""
    out = {}
    for batch in map(str, BATCHES):
        rate = {name: r[batch]["images_per_s"] for name, r in results.items()}
        out[f"ours_best/torchvision_eager@{batch}"] = rate["ours_best"] / rate["torchvision_eager"]
        out[f"onnxruntime_ours/onnxruntime_torchvision@{batch}"] = (
            rate["onnxruntime_ours"] / rate["onnxruntime_torchvision"]
        )
        fp32 = max(rate["ours_best"], rate["onnxruntime_ours"])
        out[f"int8/best_fp32@{batch}"] = rate["onnxruntime_ours_int8"] / fp32
        peers = [rate[name] for name in PEERS if name in rate]
        if peers:
            out[f"paper_optimized/fastest_fp32_peer@{batch}"] = rate["paper_optimized"] / max(peers)
            out[f"paper_compiled/fastest_fp32_peer@{batch}"] = rate["paper_compiled"] / max(peers)
        if "openvino_paper_default" in rate:
            default = rate["openvino_paper_default"]
            out[f"paper_optimized/openvino_paper_default@{batch}"] = rate["paper_optimized"] / default
            if "paper_bf16" in rate:
                out[f"paper_bf16/openvino_paper_default@{batch}"] = rate["paper_bf16"] / default
        if "onnxruntime_paper_int8" in rate:
            int8 = rate["onnxruntime_paper_int8"]
            out[f"onnxruntime_paper_int8/paper_optimized@{batch}"] = int8 / rate["paper_optimized"]
        out[f"paper_optimized/ours_optimized@{batch}"] = rate["paper_optimized"] / rate["ours_optimized"]
        if "executorch_ours" in rate:
            out[f"executorch_ours/onnxruntime_ours@{batch}"] = rate["executorch_ours"] / rate["onnxruntime_ours"]
            out[f"executorch_ours_int8/onnxruntime_ours_int8@{batch}"] = (
                rate["executorch_ours_int8"] / rate["onnxruntime_ours_int8"]
            )
    return {k: round(v, 3) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter repeats (under 3 minutes)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object on stdout (table: stderr)")
    parser.add_argument("--out", default="runs/benchmark/inference.json", help="where the JSON is written")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step measurement")
    args = parser.parse_args()
    repeats, seconds = (3, 0.5) if args.quick else (7, 3.0)
    started = time.perf_counter()
    peak = peak_gflops(repeats)
    tv, ours = models()
    paper = paper_model()
    example = torch.randn(2, 3, SIZE, SIZE)
    with tempfile.TemporaryDirectory() as folder:
        paths = {
            **pytorch_paths(tv, ours, Path(folder), example),
            **onnx_paths(tv, ours, Path(folder), example),
            **executorch_paths(ours, Path(folder), example),
            **paper_paths(paper, Path(folder), example),
            **peer_paths(paper, Path(folder)),
        }
        checks = check_paths(paths, {"ours": ours, "paper": paper})
        results = inference(paths, table1(ours, SIZE)["total_macs"], peak, repeats, seconds)
    sizes = {} if args.no_train else {SIZE: 16, 48: 128}
    report = {
        "command": shlex.join(["python", *sys.argv]),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": __import__("onnxruntime").__version__,
            "executorch": None if executorch_missing() else version("executorch"),
            **{name: _installed(name) for name in ("openvino", "ncnn", "pnnx")},
        },
        "quick": args.quick,
        "peak_gflops": round(peak, 1),
        "checks": checks,
        "results": results,
        "ratios": ratios(results),
        "training": training(sizes, 1 if args.quick else 5, seconds),
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(table(report), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
