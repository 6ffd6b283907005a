import contextlib
import io
import json
import time

import pytest

from googlenet import build_model
from googlenet.cli import main
from googlenet.model.summary import render, table1

from conftest import TABLE1_224

# Table 1's filter columns: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
COLUMNS = {
    "inception_3a": (64, 96, 128, 16, 32, 32),
    "inception_3b": (128, 128, 192, 32, 96, 64),
    "inception_4a": (192, 96, 208, 16, 48, 64),
    "inception_4b": (160, 112, 224, 24, 64, 64),
    "inception_4c": (128, 128, 256, 24, 64, 64),
    "inception_4d": (112, 144, 288, 32, 64, 64),
    "inception_4e": (256, 160, 320, 32, 128, 128),
    "inception_5a": (256, 160, 320, 32, 128, 128),
    "inception_5b": (384, 192, 384, 48, 128, 128),
}
ROW_NAMES = [
    "conv1",
    "pool1",
    "conv2",
    "pool2",
    "inception_3a",
    "inception_3b",
    "pool3",
    "inception_4a",
    "inception_4b",
    "inception_4c",
    "inception_4d",
    "inception_4e",
    "pool4",
    "inception_5a",
    "inception_5b",
    "avgpool",
    "dropout",
    "linear",
]


def _weights_from_columns(c_in, n1, r3, n3, r5, n5, pp):
    return c_in * n1 + c_in * r3 + 9 * r3 * n3 + c_in * r5 + 25 * r5 * n5 + c_in * pp


@pytest.fixture(scope="module")
def summary():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["summary", "--format", "json"]) == 0
    return json.loads(out.getvalue())


def test_json_schema_and_row_names(summary):
    assert summary["model"] == "googlenet" and summary["input_size"] == 224
    assert [r["name"] for r in summary["rows"]] == ROW_NAMES
    for row in summary["rows"]:
        assert {"name", "type", "output", "params", "macs", "paper_params", "paper_macs"} <= row.keys()


def test_output_sizes_equal_table1(summary):
    for row in summary["rows"]:
        c, *hw = TABLE1_224[row["name"]]
        h, w = hw if hw else (1, 1)
        assert row["output"] == [h, w, c], row["name"]


def test_inception_rows_equal_their_filter_columns(summary):
    rows = {r["name"]: r for r in summary["rows"]}
    assert rows["inception_3a"]["params"] == 163_328 and round(rows["inception_3a"]["macs"] / 1e6, 1) == 128.0
    # Each row's input width is the previous row's output width (192 out of the stem for 3a).
    previous = {r["name"]: p["output"][2] for p, r in zip(summary["rows"], summary["rows"][1:], strict=False)}
    for name, columns in COLUMNS.items():
        expected = _weights_from_columns(previous[name], *columns)
        h, w, _ = rows[name]["output"]
        assert rows[name]["params"] == expected, name
        assert rows[name]["macs"] == expected * h * w, name
        assert rows[name]["filters"] == dict(
            zip(("1x1", "3x3_reduce", "3x3", "5x5_reduce", "5x5", "pool_proj"), columns, strict=True)
        )
        assert rows[name]["depth"] == 2


def test_stem_and_classifier_counts(summary):
    rows = {r["name"]: r for r in summary["rows"]}
    assert rows["conv1"]["params"] == 7 * 7 * 3 * 64 == 9_408 and rows["conv1"]["macs"] == 9_408 * 112 * 112
    assert rows["conv2"]["params"] == 64 * 64 + 9 * 64 * 192 and rows["conv2"]["depth"] == 2
    assert rows["linear"]["params"] == 1024 * 1000 and rows["linear"]["macs"] == 1024 * 1000
    assert rows["pool4"]["params"] == 0 and rows["pool4"]["type"] == "max pool" and rows["pool4"]["patch"] == "3x3/2"
    assert rows["avgpool"]["patch"] == "7x7/1" and rows["dropout"]["type"] == "dropout (40%)"


def test_totals_and_marked_slips(summary):
    assert 6.9e6 < summary["total_params"] < 7.1e6
    assert 1.57e9 < summary["total_macs"] < 1.59e9
    assert summary["total_macs"] == sum(r["macs"] for r in summary["rows"])
    slips = [r["name"] for r in summary["rows"] if r["differs_from_paper"]]
    assert slips == ["conv1", "inception_4c", "inception_4d", "inception_5a", "inception_5b"]
    assert summary["paper_total_macs"] == 1_502_000_000


def test_naive_module_costs_more():
    result = table1(build_model("googlenet"), 224, naive=True)
    row = next(r for r in result["rows"] if r["name"] == "inception_3a")
    assert row["naive_params"] == 192 * 64 + 9 * 192 * 128 + 25 * 192 * 32
    assert row["naive_macs"] == row["naive_params"] * 28 * 28 > 2 * row["macs"]
    text = render(result, "markdown")
    assert text.count("| inception_") == 9 and "naive ops" in text


def test_other_sizes_and_variants():
    small = table1(build_model("googlenet_tv"), 32)
    rows = {r["name"]: r for r in small["rows"]}
    assert rows["inception_5b"]["output"] == [1, 1, 1024] and rows["inception_3a"]["paper_macs"] is None
    assert rows["inception_3a"]["filters"]["5x5"] == 32 and rows["pool4"]["patch"] == "2x2/2"
    # torchvision's 3x3 "5x5" branch: 16*32*(25-9) fewer weights in 3a.
    assert rows["inception_3a"]["params"] == 163_328 - 16 * 32 * 16


def test_summary_is_fast():
    start = time.perf_counter()
    render(table1(build_model("googlenet"), 224, naive=True), "table")
    assert time.perf_counter() - start < 5
