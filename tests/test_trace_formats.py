"""Trace formats: BurstGPT, Mooncake JSON lines, named columns and RFC 4180 quoting, through the Python API and
the CLI. Expected values are recomputed here from the sample files with Python's csv and json modules."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fluidsched
from cli_helpers import run_cli
from fluidsched import InvalidConfigError, InvalidTraceError, Workload, load_workload, simulate

DATA = Path(__file__).parent / "data"
BURSTGPT = DATA / "burstgpt_sample.csv"
MOONCAKE = DATA / "mooncake_sample.jsonl"
CUSTOM = DATA / "custom_columns_sample.csv"
CUSTOM_COLUMNS = {"arrival": "sent at (ms)", "prompt": "prompt tokens", "output": "completion tokens", "unit": "ms"}


def burstgpt_expected(
    model: str | None = None, log_type: str | None = None
) -> tuple[list[float], list[int], list[int]]:
    """Arrivals (s, from the first kept row), prompt and output lengths of the BurstGPT sample's kept rows."""
    with open(BURSTGPT, newline="") as f:
        rows = list(csv.DictReader(f))
    kept = [
        r
        for r in rows
        if (model is None or r["Model"].lower() == model.lower())
        and (log_type is None or r["Log Type"].lower() == f"{log_type} log")
        and int(r["Response tokens"]) > 0
    ]
    t0 = float(kept[0]["Timestamp"])
    return (
        [float(r["Timestamp"]) - t0 for r in kept],
        [int(r["Request tokens"]) for r in kept],
        [int(r["Response tokens"]) for r in kept],
    )


def columns_of(workload: Workload) -> tuple[list[float], list[int], list[int]]:
    return workload.arrival, workload.prompt_len, workload.output_len


# ------------------------------------------------------------------------------------------------------ BurstGPT


def test_burstgpt_sample_loads_without_failed_requests() -> None:
    workload = load_workload(BURSTGPT)
    assert columns_of(workload) == burstgpt_expected()
    with open(BURSTGPT, newline="") as f:
        rows = list(csv.DictReader(f))
    failed = sum(r["Response tokens"] == "0" for r in rows)
    assert failed == 4
    assert f"dropped {failed} rows with Response tokens = 0 (failed requests)" in workload.warnings
    assert any("shifted by -7 s" in w for w in workload.warnings), workload.warnings


@pytest.mark.parametrize(
    ("model", "log_type"),
    [("GPT-4", None), ("ChatGPT", None), ("gpt-4", None), (None, "api"), (None, "conversation"), ("ChatGPT", "api")],
)
def test_burstgpt_filters(model: str | None, log_type: str | None) -> None:
    workload = load_workload(BURSTGPT, trace_model=model, trace_log_type=log_type)
    expected = burstgpt_expected(model, log_type)
    assert columns_of(workload) == expected
    assert 0 < len(workload) < len(load_workload(BURSTGPT))
    assert any(w.startswith("kept ") and "of 48 rows with" in w for w in workload.warnings), workload.warnings


def test_burstgpt_filter_errors() -> None:
    with pytest.raises(InvalidTraceError) as info:
        load_workload(BURSTGPT, trace_model="GPT-5")
    message = str(info.value)
    assert str(BURSTGPT) in message
    assert 'no row has Model = "GPT-5"' in message
    assert '"ChatGPT" (33 rows)' in message
    assert '"GPT-4" (15 rows)' in message
    with pytest.raises(InvalidConfigError, match=r"model filter needs a BurstGPT trace.*Azure 2023"):
        load_workload(fluidsched.bundled_trace("azure"), trace_model="GPT-4")
    with pytest.raises(InvalidConfigError, match="Mooncake JSONL"):
        load_workload(MOONCAKE, trace_log_type="api")
    with pytest.raises(InvalidConfigError, match="trace_model apply only when reading a trace file"):
        load_workload(load_workload(BURSTGPT), trace_model="GPT-4")
    with pytest.raises(InvalidConfigError, match="trace_model must be a str"):
        Workload.from_trace(BURSTGPT, trace_model=4)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------ Mooncake


def test_mooncake_sample_loads() -> None:
    records = [json.loads(line) for line in MOONCAKE.read_text().splitlines()]
    workload = load_workload(MOONCAKE)
    assert workload.warnings == []
    assert workload.arrival == [r["timestamp"] * 1e-3 for r in records]
    assert workload.prompt_len == [r["input_length"] for r in records]
    assert workload.output_len == [r["output_length"] for r in records]


# ---------------------------------------------------------------------------------------------- named columns


@pytest.mark.parametrize(
    "columns",
    [CUSTOM_COLUMNS, "arrival=sent at (ms),prompt=prompt tokens,output=completion tokens,unit=ms"],
    ids=["dict", "string"],
)
def test_custom_columns_sample(columns: dict[str, str] | str) -> None:
    with open(CUSTOM, newline="") as f:
        rows = list(csv.DictReader(f))
    stamps = [int(r["sent at (ms)"].replace(",", "")) for r in rows]
    workload = load_workload(CUSTOM, columns=columns)
    assert workload.arrival == [(t - stamps[0]) * 1e-3 for t in stamps]
    assert workload.prompt_len == [int(r["prompt tokens"].replace(",", "")) for r in rows]
    assert workload.output_len == [int(r["completion tokens"].replace(",", "")) for r in rows]


def test_custom_columns_without_arrival_need_a_rate() -> None:
    lengths = {"prompt": "prompt tokens", "output": "completion tokens"}
    with pytest.raises(InvalidConfigError, match="no arrival times"):
        load_workload(CUSTOM, columns=lengths)
    workload = load_workload(CUSTOM, columns=lengths, rate=2.0, seed=3)
    assert len(workload) == 24
    assert workload.arrival == sorted(workload.arrival)


@pytest.mark.parametrize(
    ("columns", "cls", "fragments"),
    [
        ({"prompt": "prompt tokens"}, InvalidConfigError, ("prompt=COLUMN and output=COLUMN are required",)),
        ({**CUSTOM_COLUMNS, "model": "x"}, InvalidConfigError, ('unknown key "model"',)),
        ({**CUSTOM_COLUMNS, "unit": "h"}, InvalidConfigError, ('unknown unit "h"',)),
        ({**CUSTOM_COLUMNS, "output": "tokens"}, InvalidTraceError, ('column "tokens" (output=', "header found")),
        (
            {"prompt": "note", "output": "prompt tokens"},
            InvalidTraceError,
            ("line 2", 'column "note"', "custom columns"),
        ),
        ({"prompt": 1, "output": "b"}, InvalidConfigError, ("keys and values must be str",)),
    ],
)
def test_custom_column_errors(columns: dict[str, Any], cls: type[Exception], fragments: tuple[str, ...]) -> None:
    with pytest.raises(cls) as info:
        load_workload(CUSTOM, columns=columns, rate=1.0)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


# ------------------------------------------------------------------------------------------ detection and errors


@pytest.mark.parametrize(
    ("text", "timed", "size"),
    [
        ("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n3,ChatGPT,10,5,15,API log\n", True, 1),
        ('{"timestamp": 5, "input_length": 10, "output_length": 5, "hash_ids": [1]}\n', True, 1),
        ("arrived_at,num_prefill_tokens,num_decode_tokens\n0,10,5\n", True, 1),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.5,10,5\n", True, 1),
        ("num_prefill_tokens,num_decode_tokens\n10,5\n11,6\n", False, 2),
        ("question_length,answer_length\n10,5\n", False, 1),
    ],
    ids=["burstgpt", "mooncake", "vidur-replay", "azure", "vidur-lengths", "lmsys"],
)
def test_format_detection(tmp_path: Path, text: str, timed: bool, size: int) -> None:
    path = tmp_path / "trace.txt"
    path.write_text(text)
    if timed:
        workload = load_workload(path)
        assert workload.arrival[0] == 0.0
        assert workload.prompt_len[0] == 10
        assert workload.output_len[0] == 5
    else:
        with pytest.raises(InvalidConfigError, match="no arrival times"):
            load_workload(path)
        workload = load_workload(path, rate=1.0)
    assert len(workload) == size


BAD_FILES: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "burstgpt bad value",
        "Timestamp,Model,Request tokens,Response tokens\n0,ChatGPT,10,5\n1,GPT-4,ten,5\n",
        ('line 3, column "Request tokens"', 'not a number: found "ten"', "(BurstGPT format)"),
    ),
    (
        "burstgpt missing column",
        "Timestamp,Model,Request tokens,Total tokens\n0,ChatGPT,10,15\n",
        ('missing required column "Response tokens" for the BurstGPT format', "line 1"),
    ),
    (
        "mooncake bad value",
        '{"timestamp": 0, "input_length": 5, "output_length": 2}\n'
        '{"timestamp": 7, "input_length": -5, "output_length": 2}\n',
        ('line 2, key "input_length"', "negative value", "(Mooncake JSONL format)"),
    ),
    (
        "mooncake missing key",
        '{"timestamp": 0, "prompt_len": 5, "output_length": 2}\n',
        ('missing key "input_length" for the Mooncake JSONL format', "line 1", "prompt_len"),
    ),
    ("mooncake not json", '{"timestamp": 0, "input_length": 5, "output_length": 2\n', ("line 1", "not valid JSON")),
    (
        "misplaced comma",
        'arrived_at,num_prefill_tokens,num_decode_tokens\n0,"10,00",5\n',
        ('line 2, column "num_prefill_tokens"', 'misplaced comma in "10,00"', "Vidur replay"),
    ),
    (
        "unclosed quote",
        'num_prefill_tokens,num_decode_tokens\n"10,5\n6,7\n',
        ("line 2", "wrong number of fields", "never closed"),
    ),
]


@pytest.mark.parametrize(("text", "fragments"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES])
def test_bad_files_name_format_column_and_line(tmp_path: Path, text: str, fragments: tuple[str, ...]) -> None:
    path = tmp_path / "bad.trace"
    path.write_text(text)
    with pytest.raises(InvalidTraceError) as info:
        load_workload(path, rate=1.0)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_error_messages_stay_short(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    path.write_text('{"timestamp": 0, "input_length": "' + "9" * 1_000_000 + '", "output_length": 2}\n')
    with pytest.raises(InvalidTraceError) as info:
        load_workload(path)
    assert len(str(info.value)) < 600


def test_rfc4180_quoting(tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    path.write_bytes(
        b'\xef\xbb\xbf"arrived_at","num_prefill_tokens","num_decode_tokens","note"\r\n'
        b'"0","1,000","12","a, b"\r\n'
        b'"0.5","2,048","7","said ""hi""\nthen left"\r\n'
        b'1,3,4,""\r\n'
    )
    workload = load_workload(path)
    assert columns_of(workload) == ([0.0, 0.5, 1.0], [1000, 2048, 3], [12, 7, 4])


# ---------------------------------------------------------------------------------- round trip with Python's csv

_QUOTING: list[Literal[0, 1, 2, 3]] = [csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]


@st.composite
def quoted_tables(draw: st.DrawFn) -> tuple[bytes, list[float], list[int], list[int]]:
    """A Vidur replay table plus a free-text column, in a random column order, written by Python's csv module
    with random quoting, line ends, BOM and thousands separators."""
    n = draw(st.integers(1, 30))
    gaps = draw(st.lists(st.floats(0, 1e4, allow_nan=False, allow_infinity=False), min_size=n - 1, max_size=n - 1))
    arrivals = [0.0]
    for gap in gaps:
        arrivals.append(arrivals[-1] + gap)
    prompts = draw(st.lists(st.integers(1, 2**32 - 1), min_size=n, max_size=n))
    outputs = draw(st.lists(st.integers(1, 10**7), min_size=n, max_size=n))
    notes = draw(st.lists(st.text(st.sampled_from('ab ,"\n\r\t;x'), max_size=12), min_size=n, max_size=n))
    order = draw(st.permutations(["arrived_at", "num_prefill_tokens", "num_decode_tokens", "note"]))
    quoting = draw(st.sampled_from(_QUOTING))
    grouped = draw(st.booleans())
    line_end = draw(st.sampled_from(["\r\n", "\n"]))
    if line_end == "\n":
        # Python's writer quotes only the characters of its own line end: a bare CR would go out unquoted, which
        # no RFC 4180 reader (Python's included) reads back as part of the field.
        notes = [note.replace("\r", "") for note in notes]
    out = io.StringIO()
    writer = csv.writer(out, quoting=quoting, lineterminator=line_end)
    writer.writerow(order)
    for a, p, o, note in zip(arrivals, prompts, outputs, notes, strict=True):
        cells = {
            "arrived_at": repr(a),
            "num_prefill_tokens": f"{p:,}" if grouped else p,
            "num_decode_tokens": f"{o:,}" if grouped else o,
            "note": note,
        }
        writer.writerow([cells[c] for c in order])
    bom = "\ufeff" if draw(st.booleans()) else ""
    return (bom + out.getvalue()).encode(), arrivals, prompts, outputs


@given(table=quoted_tables())
def test_python_csv_tables_round_trip(tmp_path_factory: pytest.TempPathFactory, table: Any) -> None:
    data, arrivals, prompts, outputs = table
    path = tmp_path_factory.mktemp("roundtrip") / "table.csv"
    path.write_bytes(data)
    workload = load_workload(path)
    assert workload.arrival == arrivals
    assert workload.prompt_len == prompts
    assert workload.output_len == outputs
    assert workload.warnings == []


# ------------------------------------------------------------------------------------------------------- CLI


def test_cli_burstgpt_model_filter(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("simulate", "--trace", str(BURSTGPT), "--trace-model", "GPT-4", "--json", "-q")
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    summary = json.loads(out)
    api = simulate(load_workload(BURSTGPT, trace_model="GPT-4"), "vllm").summary()
    for key, value in api.items():
        if key != "wall_time_s" and not (isinstance(value, float) and math.isnan(value)):
            assert summary[key] == value, key
    assert summary["num_requests"] == len(burstgpt_expected("GPT-4")[0])
    assert "warning: dropped" in err
    assert "warning: kept" in err
    assert 'Model = "GPT-4"' in err


@pytest.mark.parametrize(
    "args",
    [
        ["--trace", str(MOONCAKE)],
        [
            "--trace",
            str(CUSTOM),
            "--columns",
            "arrival=sent at (ms),prompt=prompt tokens,output=completion tokens,unit=ms",
        ],
        ["--trace", str(CUSTOM), "--columns", "prompt=prompt tokens,output=completion tokens", "--rate", "3"],
        ["--trace", str(BURSTGPT), "--trace-log-type", "api"],
    ],
    ids=["mooncake", "columns", "columns-length-only", "log-type"],
)
def test_cli_reads_each_format(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, err = run_cli(capsys, "simulate", *args, "--json", "-q")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["num_finished"] == summary["num_requests"] > 0


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--trace", str(DATA / "mooncake_sample.jsonl"), "--trace-model", "x"], ("model and log type filters",)),
        (["--type", "10:10:1", "--columns", "prompt=a,output=b"], ("--columns apply only with --trace FILE",)),
        (["--trace", str(CUSTOM), "--columns", "prompt=a,output"], ('columns: expected KEY=COLUMN, found "output"',)),
        (["--trace", str(CUSTOM)], ("unrecognised header", "--columns")),
        (["--trace", str(BURSTGPT), "--trace-model", "Claude"], ('no row has Model = "Claude"',)),
    ],
    ids=["filter-on-mooncake", "columns-without-trace", "bad-spec", "unknown-layout", "unknown-model"],
)
def test_cli_trace_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], fragments: tuple[str, ...]
) -> None:
    code, out, err = run_cli(capsys, "simulate", *args, "-q")
    assert code == 2
    assert out == ""
    assert err.startswith("fluidsched: error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
