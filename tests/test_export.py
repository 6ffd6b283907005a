"""Exported ONNX, int8 ONNX, TorchScript and ExecuTorch (fp32, int8) files run without this package's model
code, carry the weights' metadata and give the eager model's outputs; `googlenet export` refuses a file that does
not."""

import dataclasses
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from googlenet import save_weights
from googlenet.cli import main
from googlenet.data.fashion_mnist import CLASSES
from googlenet.export import check, export, load_exported, sample_images
from googlenet.model.formats.executorch import executorch_missing

from conftest import assert_float32_close, forward, trained_like


@pytest.fixture(scope="module")
def tiny():
    """A tiny Fashion-MNIST classifier at 32x32 with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = trained_like("googlenet_bn", aux=False)
    model.meta = dataclasses.replace(
        model.meta, input_size=32, crop_pct=1.0, class_names=list(CLASSES), mean=(0.286,) * 3, std=(0.353,) * 3
    )
    return model


def test_onnx_export_runs_in_onnxruntime_alone_and_matches_eager(tiny, fmnist, tmp_path):
    images = sample_images(tiny.meta, "fashion_mnist", "test", str(fmnist), 24)
    assert images.shape == (24, 3, 32, 32)
    report = export(tiny, "onnx", tmp_path / "m.onnx", images)
    assert report["top1_agreement"] == 1
    # Plain onnxruntime, any batch size, metadata record in the file.
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["googlenet"])
    assert meta["class_names"] == list(CLASSES) and meta["input_size"] == 32 and meta["std"] == [0.353] * 3
    (logits,) = session.run(None, {"images": images[:5].numpy()})
    assert_float32_close(torch.from_numpy(logits), forward, tiny, images[:5])


def test_torchscript_export_runs_in_torch_jit_and_matches_eager(tiny, fmnist, tmp_path):
    images = sample_images(tiny.meta, "fashion_mnist", "test", str(fmnist), 8)
    export(tiny, "torchscript", tmp_path / "m.pt", images)
    extra = {"googlenet.json": ""}
    with pytest.warns(FutureWarning):  # torch.jit is deprecated in favour of torch.export
        net = torch.jit.load(str(tmp_path / "m.pt"), _extra_files=extra)
    assert json.loads(extra["googlenet.json"])["class_names"] == list(CLASSES)
    with torch.inference_mode():
        assert_float32_close(net(images[:3]), forward, tiny, images[:3])
        assert_float32_close(net(images[:1]), forward, tiny, images[:1])  # another batch size


def test_torchscript_file_under_the_onednn_graph_fuser_matches_eager(tiny, fmnist, tmp_path):
    images = sample_images(tiny.meta, "fashion_mnist", "test", str(fmnist), 8)
    export(tiny, "torchscript", tmp_path / "m.pt", images)
    net = load_exported(tmp_path / "m.pt")
    assert net.fuse and not torch.jit.onednn_fusion_enabled()
    with torch.inference_mode():
        for batch in (images[:3], images[:1]):
            for _ in range(4):  # the profiling executor compiles the fused graph on the second or third call
                assert_float32_close(net(batch), forward, tiny, batch)
                assert not torch.jit.onednn_fusion_enabled()  # the process-wide switch is put back
    fused_graph = str(torch.jit.last_executed_optimized_graph())
    assert "prim::oneDNNFusionGroup" in fused_graph or "LlgaFusionGroup" in fused_graph


def test_an_export_that_differs_from_eager_is_refused_and_deleted(tiny, fmnist, tmp_path):
    images = sample_images(tiny.meta, "fashion_mnist", "test", str(fmnist), 8)
    path = tmp_path / "m.pt"
    export(tiny, "torchscript", path, images)
    other = trained_like("googlenet_bn", aux=False)  # different weights stand in for a broken export
    other.meta = tiny.meta
    with pytest.raises(ValueError, match="differs from the eager model"):
        check(other, path, images, tolerance=1e-4, min_agreement=None)
    assert not path.exists()


def test_export_command_int8_and_evaluate_on_the_file(tiny, fmnist, tmp_path, capsys):
    weights = str(save_weights(tiny, tmp_path / "tiny.safetensors"))
    common = ["--checkpoint", weights, "--root", str(fmnist)]
    args = ["export", *common, "--int8", "--check-images", "48", "--calibration-images", "64", "--json"]
    assert main([*args, "--min-agreement", "0.5"]) == 0
    report = json.loads(capsys.readouterr().out)
    path = tmp_path / "tiny.int8.onnx"
    assert report["path"] == str(path) and report["int8"] and report["top1_agreement"] >= 0.5
    graph = onnx.load(str(path)).graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)
    # int8 weights are a quarter of fp32; this tiny model's per-channel scales and zero points add a lot (the
    # Fashion-MNIST model's file is 26% of its fp32 one, docs/results.md).
    assert path.stat().st_size < 0.5 * (tmp_path / "tiny.safetensors").stat().st_size
    assert load_exported(path).meta.class_names == list(CLASSES)
    # The exported file is a checkpoint for `evaluate` like the weights it came from.
    assert main(["evaluate", "--checkpoint", str(path), "--root", str(fmnist), "--json", "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 48
    assert main(["export", *common, "--format", "torchscript", "--int8"]) == 2
    assert "--int8" in capsys.readouterr().err


executorch_reason = executorch_missing() or ""
needs_executorch = pytest.mark.skipif(bool(executorch_reason), reason=executorch_reason)


@needs_executorch
def test_executorch_export_runs_in_executorch_alone_and_matches_eager(tiny, fmnist, tmp_path):
    from executorch.runtime import Runtime

    images = sample_images(tiny.meta, "fashion_mnist", "test", str(fmnist), 40)
    report = export(tiny, "executorch", tmp_path / "m.pte", images)
    assert report["top1_agreement"] == 1 and report["relative_diff"] <= 1e-4
    # ExecuTorch's runtime alone: the forward method on one image (the program's static batch), the metadata
    # record as a constant method.
    program = Runtime.get().load_program(tmp_path / "m.pte")
    method = program.load_method("forward")
    assert list(method.metadata.input_tensor_meta(0).sizes()) == [1, 3, 32, 32]
    for batch in (images[:1], images[7:8]):
        assert_float32_close(method.execute((batch,))[0], forward, tiny, batch)
    record = program.load_method("googlenet_meta").execute(())[0]
    meta = json.loads(bytes(record.numpy()).decode())
    assert meta["class_names"] == list(CLASSES) and meta["input_size"] == 32 and meta["std"] == [0.353] * 3
    # More images than the program's planned batch run in chunks, each chunk's logits those of eager.
    net = load_exported(tmp_path / "m.pte")
    assert net.max_batch == 1 < len(images)
    assert_float32_close(net(images), forward, tiny, images)


@needs_executorch
def test_executorch_int8_export_and_predict_on_the_file(tiny, fmnist, tmp_path, capsys):
    weights = str(save_weights(tiny, tmp_path / "tiny.safetensors"))
    args = ["export", "--checkpoint", weights, "--root", str(fmnist), "--format", "executorch", "--int8"]
    assert main([*args, "--check-images", "64", "--calibration-images", "64", "--json", "--min-agreement", "0.5"]) == 0
    report = json.loads(capsys.readouterr().out)
    path = tmp_path / "tiny.int8.pte"
    # The int8 file's top-1 agreement with fp32 eager on the 64 test images: reported, and bounded.
    assert report["path"] == str(path) and report["int8"] and 0.5 <= report["top1_agreement"] <= 1
    two = sample_images(tiny.meta, "fashion_mnist", "test", str(fmnist), 2)
    fp32 = export(tiny, "executorch", tmp_path / "tiny.pte", two)
    assert path.stat().st_size < 0.6 * fp32["bytes"]  # int8 weights; per-channel scales add to this tiny model
    image = tmp_path / "item.png"
    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(image)
    assert main(["predict", "--checkpoint", str(path), str(image), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["predictions"][0]["class"] in CLASSES


@needs_executorch
def test_a_damaged_pte_gives_one_line(tiny, fmnist, tmp_path, capsys):
    images = sample_images(tiny.meta, "fashion_mnist", "test", str(fmnist), 2)
    export(tiny, "executorch", tmp_path / "m.pte", images)
    data = (tmp_path / "m.pte").read_bytes()
    (tmp_path / "cut.pte").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.pte").write_bytes(bytes(range(256)) * 64)
    for name in ("cut.pte", "noise.pte"):
        image = tmp_path / "item.png"
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
        assert main(["predict", "--checkpoint", str(tmp_path / name), str(image)]) == 2
        # ExecuTorch's C++ runtime logs its own lines on stderr (file size, CPU info); ours is one line.
        (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("googlenet")]
        assert name in err and "not a readable ExecuTorch program" in err, err


def test_executorch_missing_says_what_to_install(monkeypatch, tiny, fmnist, tmp_path):
    import googlenet.model.formats.executorch as executorch

    monkeypatch.setattr(executorch.importlib.util, "find_spec", lambda name: None)
    images = sample_images(tiny.meta, "fashion_mnist", "test", str(fmnist), 2)
    with pytest.raises(ValueError, match=r"pip install -e '\.\[executorch\]'"):
        export(tiny, "executorch", tmp_path / "m.pte", images)


@pytest.mark.parametrize("name, size", [("googlenet", 32), ("googlenet_bn", 40)])
def test_onnx_files_of_small_models_load_in_openvino_and_opencv(name, size, tmp_path):
    """Under 48 px a ceil_mode pool's window is larger than its input (pool4 sees 2x2 at 32 px), which
    onnxruntime accepts and OpenVINO and OpenCV's DNN refused; the export writes those pools end-padded."""
    import cv2
    import openvino as ov

    model = trained_like(name, aux=False)
    model.meta = dataclasses.replace(model.meta, input_size=size)
    images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    export(model, "onnx", tmp_path / "m.onnx", images)
    compiled = ov.Core().compile_model(str(tmp_path / "m.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert_float32_close(torch.from_numpy(compiled(images.numpy())[0]), forward, model, images)
    net = cv2.dnn.readNetFromONNX(str(tmp_path / "m.onnx"))
    net.setInput(images.numpy())
    assert_float32_close(torch.from_numpy(net.forward()), forward, model, images)


@pytest.fixture(scope="module")
def paper_tiny():
    """The paper's network (LRN, true 5x5 convolutions) at a quarter width, 32 px, Fashion-MNIST's classes."""
    torch.manual_seed(0)
    model = trained_like("googlenet", aux=False).eval()
    model.meta = dataclasses.replace(model.meta, input_size=32, crop_pct=1.0, class_names=list(CLASSES))
    return model


def test_openvino_export_runs_in_openvino_alone_and_the_commands_take_it(paper_tiny, fmnist, tmp_path, capsys):
    """`export --format openvino`: IR with float32 weights and the record, run by plain OpenVINO in f32 within
    float32 rounding of eager; then `evaluate` and `predict` on the file, at batch sizes other than the first."""
    import openvino as ov

    weights = str(save_weights(paper_tiny, tmp_path / "paper.safetensors"))
    common = ["--checkpoint", weights, "--root", str(fmnist), "--check-images", "24"]
    assert main(["export", *common, "--format", "openvino", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    path = tmp_path / "paper.openvino.xml"
    assert report["path"] == str(path) and report["relative_diff"] < 1e-4 and path.with_suffix(".bin").is_file()
    assert report["bytes"] == path.stat().st_size + path.with_suffix(".bin").stat().st_size  # the weights counted
    ir = ov.Core().read_model(str(path))
    meta = json.loads(ir.get_rt_info(["googlenet", "meta"]).astype(str))
    assert meta["class_names"] == list(CLASSES) and meta["variant"] == "googlenet"
    assert ir.get_rt_info(["googlenet", "inference_precision"]).astype(str) == "f32"
    compiled = ov.Core().compile_model(ir, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    images = sample_images(paper_tiny.meta, "fashion_mnist", "test", str(fmnist), 5)
    assert_float32_close(torch.from_numpy(compiled(images.numpy())[0]), forward, paper_tiny, images)
    loaded = load_exported(path)
    with torch.inference_mode():
        for batch in (1, 3, 5):  # a static shape compiled per batch size
            assert_float32_close(loaded(images[:batch]), forward, paper_tiny, images[:batch])
    assert main(["evaluate", "--checkpoint", str(path), "--root", str(fmnist), "--json", "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 48
    image = tmp_path / "item.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    assert main(["predict", "--checkpoint", str(path), str(image), "--json"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert answer["predictions"][0]["class"] in CLASSES, answer


def test_openvino_bf16_export_is_checked_by_agreement_and_runs_in_bfloat16(paper_tiny, fmnist, tmp_path):
    images = sample_images(paper_tiny.meta, "fashion_mnist", "test", str(fmnist), 24)
    path = tmp_path / "paper.bf16.openvino.xml"
    report = export(paper_tiny, "openvino_bf16", path, images, min_agreement=0.9)
    assert report["top1_agreement"] >= 0.9
    loaded = load_exported(path)
    assert loaded.precision == "bf16"
    with torch.inference_mode():
        # bfloat16 keeps 8 significant bits: a few of its roundings of the largest logit (f32 on CPUs without it).
        eager = paper_tiny(images)
        assert float((loaded(images) - eager).abs().max()) <= 0.1 * float(eager.abs().max())
    # A file that fails its check goes with the files beside it (here its .bin).
    with pytest.raises(ValueError, match="was not kept"):
        export(paper_tiny, "openvino_bf16", path, images, min_agreement=1.01)
    assert not path.exists() and not path.with_suffix(".bin").exists()
    # A bf16 file is held to the agreement, not to float32's tolerance (which bf16's rounding, or f32's on CPUs
    # without bf16 kernels, is far beyond).
    assert export(paper_tiny, "openvino_bf16", path, images, tolerance=1e-12)["relative_diff"] > 1e-12


def test_a_damaged_openvino_file_gives_one_line(paper_tiny, fmnist, tmp_path, capsys):
    """Not XML, XML cut short, and an IR file without its .bin: one line each (and no crash: OpenVINO's frontends,
    tried on a file that is not IR, crashed the process once ExecuTorch's libraries were loaded)."""
    images = sample_images(paper_tiny.meta, "fashion_mnist", "test", str(fmnist), 2)
    export(paper_tiny, "openvino", tmp_path / "good.openvino.xml", images)
    text = (tmp_path / "good.openvino.xml").read_text()
    (tmp_path / "junk.openvino.xml").write_text("junk")
    (tmp_path / "cut.openvino.xml").write_text(text[: len(text) // 2])
    (tmp_path / "cut.openvino.bin").write_bytes((tmp_path / "good.openvino.bin").read_bytes())
    (tmp_path / "alone.openvino.xml").write_text(text)
    image = tmp_path / "item.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    for name in ("junk", "cut", "alone"):
        assert main(["predict", "--checkpoint", str(tmp_path / f"{name}.openvino.xml"), str(image)]) == 2
        (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("googlenet")]
        assert f"{name}.openvino.xml is not a readable OpenVINO IR file" in err, err


def test_openvino_missing_says_what_to_install(monkeypatch, paper_tiny, fmnist, tmp_path):
    import googlenet.model.formats.openvino as openvino

    monkeypatch.setattr(openvino.importlib.util, "find_spec", lambda name: None)
    images = sample_images(paper_tiny.meta, "fashion_mnist", "test", str(fmnist), 2)
    with pytest.raises(ValueError, match=r"pip install -e '\.\[openvino\]'"):
        export(paper_tiny, "openvino", tmp_path / "m.openvino.xml", images)
