import json
import os

import pytest
import torch
import torchvision
from torch import nn

from googlenet import ModelMeta, build_model, load_model, read_weights, save_weights
from googlenet.model import MultiBoxHead, RegionHead


def _random_torchvision(transform_input=False, aux_logits=True):
    """A torchvision googlenet with random weights and non-trivial BatchNorm statistics (no download)."""
    tv = torchvision.models.googlenet(init_weights=True, aux_logits=aux_logits, transform_input=transform_input)
    for m in tv.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    return tv.eval()


@pytest.mark.parametrize("transform_input", [False, True])
def test_torchvision_state_dict_gives_the_same_logits(tmp_path, transform_input):
    tv = _random_torchvision(transform_input)
    path = tmp_path / "tv.pth"
    torch.save(tv.state_dict(), path)
    ours = build_model("googlenet_tv", weights=path, transform_input=transform_input).eval()
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        assert (tv(x) - ours(x)).abs().max() < 1e-4


def test_torchvision_aux_heads_match(tmp_path):
    tv = _random_torchvision()
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    ours = build_model("googlenet_tv", weights=tmp_path / "tv.pth").eval()
    seen = {}
    tv.inception4a.register_forward_hook(lambda m, i, o: seen.__setitem__("4a", o))
    tv.inception4d.register_forward_hook(lambda m, i, o: seen.__setitem__("4d", o))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        tv(x)
        out = ours(x, return_aux=True)
        assert (out.aux1 - tv.aux1(seen["4a"])).abs().max() < 1e-4
        assert (out.aux2 - tv.aux2(seen["4d"])).abs().max() < 1e-4


def test_torchvision_without_aux_builds_without_heads(tmp_path):
    torch.save(_random_torchvision(aux_logits=False).state_dict(), tmp_path / "tv.pth")
    ours = build_model("googlenet_tv", weights=tmp_path / "tv.pth")
    assert ours.aux1 is None and ours.num_classes == 1000


def test_safetensors_round_trip_keeps_weights_and_record(tmp_path):
    model = build_model("googlenet", num_classes=10, width=0.5).eval()
    model.meta.class_names = [f"class{i}" for i in range(10)]
    model.meta.input_size = 96
    model.meta.metrics = {"top1": 0.91, "command": "googlenet evaluate ..."}
    path = save_weights(model, tmp_path / "w.safetensors")
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    loaded = load_model(path).eval()
    assert loaded.meta == model.meta and loaded.meta.options["width"] == 0.5
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(x), loaded(x), rtol=0, atol=0)


def test_meta_record_survives_json():
    meta = ModelMeta("googlenet_bn", 3, {"width": 2.0}, 64, (0.1, 0.2, 0.3), (1.0, 1.0, 1.0), "bicubic", 1.0, ["a"])
    assert ModelMeta.from_json(meta.to_json()) == meta


def test_task_heads_are_typed_and_files_from_before_a_setting_keep_their_meaning():
    regions = ModelMeta("googlenet_bn", 3, task="regions", head=RegionHead(context=8, proposals="ss", fg_iou=0.5))
    assert ModelMeta.from_json(regions.to_json()) == regions
    assert ModelMeta.from_json(ModelMeta("googlenet_bn", 10).to_json()).head is None  # a classifier has none
    # A MultiBox file written before the grid and tiles settings existed pooled globally and ran on whole images.
    record = json.loads(ModelMeta("googlenet_bn", 10, task="multibox").to_json())
    record["head"] = {"priors": 100, "top": 200, "nms": 0.7}
    assert ModelMeta.from_json(json.dumps(record)).head == MultiBoxHead(priors=100, top=200, nms=0.7, grid=0, tiles=1)


def test_mismatched_weights_are_explained(tmp_path):
    path = save_weights(build_model("googlenet", num_classes=10), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="holds 'googlenet' weights, not 'googlenet_bn'"):
        build_model("googlenet_bn", weights=path)
    with pytest.raises(ValueError, match=r"10 classes, not 1000.*reset_classifier"):
        build_model("googlenet", num_classes=1000, weights=path)
    torch.save(build_model("googlenet_bn", num_classes=10).state_dict(), tmp_path / "bn.pth")
    with pytest.raises(ValueError, match="does not fit"):
        build_model("googlenet", weights=tmp_path / "bn.pth")


def test_damaged_and_missing_files(tmp_path):
    path = save_weights(build_model("googlenet", num_classes=10, width=0.25), tmp_path / "w.safetensors")
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable safetensors"):
        read_weights(damaged)
    with pytest.raises(FileNotFoundError):
        read_weights(tmp_path / "absent.safetensors")
    (tmp_path / "w.ckpt").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"must be \.safetensors"):
        read_weights(tmp_path / "w.ckpt")


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    evil = _RunsCode()
    evil.target = tmp_path / "pwned"
    torch.save({"conv1.conv.weight": evil}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="could not be loaded"):
        build_model("googlenet", weights=tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()
