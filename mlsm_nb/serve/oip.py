"""The Open Inference Protocol (KServe v2, MLServer, Triton) on top of the record format.

An infer request's `inputs` are columns (one tensor per field, `shape` [n] or [n, 1], checked
against its data); they become n flat records. The record ids come from an input named like the id
field when there is one, else from the request id and the row position. The response has one output
tensor per output the model states (`serve.declared`) and per other key a row returned (`_status`,
`_error`, `_error_kind`, ...), rows in request order; or the `outputs` the request names. A model's
reasons (`_reasons`, a list per row: `core.output`) are a BYTES tensor whose elements are each row's
list as JSON text (`[{"field": "company_size", "contribution": 1.36}, ...]`; null, or empty in binary,
for a row without), since a tensor holds no nested values.

Binary tensor data extension (what tritonclient sends by default): the body is the JSON request,
`Inference-Header-Content-Length` bytes long, followed by the data of each input whose parameters
have `binary_data_size`, in the order of `inputs` (little-endian, row major; BYTES elements each a
4-byte length and the bytes). Outputs asked for as binary (`binary_data` on a requested output, or
`binary_data_output` on the request) follow the JSON response the same way.

A value a row has not (the model failed on it, or left the key out) is null in JSON; in binary,
NaN in FP64 and empty in BYTES. So that both hold it, an output that would be INT64 or BOOL is FP64
in a response where a row has no value for it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._version import __version__
from ..core.output import REASONS_KEY, error_entry
from ..files import dumps

DATATYPES = {"int": "INT64", "float": "FP64", "str": "BYTES", "bool": "BOOL"}
# the outputs every model may give besides its own (as `score_batch` writes them); all text (`_reasons`: JSON)
META_OUTPUTS = ("_status", "_error", "_error_kind", "_error_type", "_error_at", REASONS_KEY)
# struct formats of the fixed-size datatypes (BF16 and BYTES are read apart)
_FORMATS = {"BOOL": "?", "INT8": "b", "INT16": "h", "INT32": "i", "INT64": "q", "UINT8": "B", "UINT16": "H",
            "UINT32": "I", "UINT64": "Q", "FP16": "e", "FP32": "f", "FP64": "d"}
_INT64 = (-(2 ** 63), 2 ** 63)


class InferError(ValueError):
    """An infer request that does not follow the protocol (one line, for a 400)."""


def server_metadata() -> dict:
    return {"name": "mlsm-nb", "version": __version__, "extensions": ["binary_tensor_data"]}


def model_metadata(model, versions: Sequence[str], outputs: Mapping[str, str | None]) -> dict:
    """Metadata of a model: its fields as input tensors; the outputs its notebook states (those of a known
    type, `serve.declared`) and the ones every model may give."""
    stated = [{"name": name, "datatype": DATATYPES[kind], "shape": [-1]} for name, kind in outputs.items() if kind]
    return {"name": model.name, "versions": list(versions), "platform": "mlsm-nb",
            "inputs": [{"name": s.name, "datatype": DATATYPES[s.type], "shape": [-1]} for s in model.specs],
            "outputs": stated + [{"name": name, "datatype": "BYTES", "shape": [-1]} for name in META_OUTPUTS],
            "parameters": {"status": model.status, "kind": model.kind}}


# --- the request ---------------------------------------------------------------------

def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(the JSON request, the binary data after it) by the `Inference-Header-Content-Length` header."""
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise InferError(f"Inference-Header-Content-Length {header_length!r} is not a length within the "
                         f"body's {len(body):,} bytes")
    return body[:int(header_length)], body[int(header_length):]


def _unpack_bytes(name: str, raw: bytes) -> list[str]:
    values, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InferError(f"input {name!r}: BYTES element {len(values)} has no whole 4-byte length")
        (size,) = struct.unpack_from("<I", raw, offset)
        if offset + 4 + size > len(raw):
            raise InferError(f"input {name!r}: BYTES element {len(values)} of {size} bytes runs past its data")
        try:
            values.append(raw[offset + 4:offset + 4 + size].decode())
        except UnicodeDecodeError:
            raise InferError(f"input {name!r}: BYTES element {len(values)} is not UTF-8 text") from None
        offset += 4 + size
    return values


def _unpack(name: str, datatype: Any, raw: bytes) -> list:
    """The values of one input's binary data."""
    if datatype == "BYTES":
        return _unpack_bytes(name, raw)
    fmt = "H" if datatype == "BF16" else _FORMATS.get(datatype)
    if fmt is None:
        raise InferError(f"input {name!r}: datatype {datatype!r} is not one of "
                         f"{', '.join([*_FORMATS, 'BF16', 'BYTES'])}")
    size = struct.calcsize(fmt)
    if len(raw) % size:
        raise InferError(f"input {name!r}: {len(raw)} bytes are not a whole number of {datatype} values "
                         f"({size} bytes each)")
    values = list(struct.unpack(f"<{len(raw) // size}{fmt}", raw))
    if datatype == "BF16":  # the upper half of a float32
        values = [struct.unpack("<f", struct.pack("<I", v << 16))[0] for v in values]
    return values


def attach_binary(request: Any, binary: bytes) -> None:
    """Give each input of a parsed infer request that has `binary_data_size` its `data`, read from `binary`."""
    offset = 0
    inputs = request.get("inputs") if isinstance(request, Mapping) else None
    for tensor in inputs if isinstance(inputs, list) else ():
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        if not isinstance(parameters, Mapping):
            continue
        name = tensor.get("name")
        if "shared_memory_region" in parameters:
            raise InferError(f"input {name!r}: the shared memory extension is not supported; send the data "
                             "in the body")
        size = parameters.get("binary_data_size")
        if size is None:
            continue
        if type(size) is not int or size < 0:
            raise InferError(f"input {name!r}: binary_data_size must be a number of bytes, got {size!r}")
        if "data" in tensor:
            raise InferError(f"input {name!r}: has both 'data' and binary_data_size")
        if offset + size > len(binary):
            raise InferError(f"input {name!r}: binary_data_size {size} runs past the body's binary data "
                             f"({len(binary) - offset} bytes left)")
        tensor["data"] = _unpack(name, tensor.get("datatype"), binary[offset:offset + size])
        offset += size
    if offset != len(binary):
        raise InferError(f"{len(binary) - offset} bytes after the JSON request belong to no input "
                         "(binary_data_size)")


def _flatten(data: Any) -> list:
    if isinstance(data, list) and data and isinstance(data[0], list):
        return [value for row in data for value in _flatten(row)]
    return data


def _check_shape(name: str, shape: Any, values: int) -> None:
    """An input's `shape` (when given) holds its data, one value per row: [n] or [n, 1]."""
    if shape is None:
        return
    if not isinstance(shape, list) or not shape or not all(type(size) is int and size >= 0 for size in shape):
        raise InferError(f"input {name!r}: 'shape' must be a list of sizes, got {shape!r}")
    if math.prod(shape) != values:
        raise InferError(f"input {name!r}: shape {shape} holds {math.prod(shape)} values, 'data' has {values}")
    if any(size != 1 for size in shape[1:]):
        raise InferError(f"input {name!r}: shape {shape}: one value per row expected (shape [n] or [n, 1])")


def records_from_request(body: Any, id_field: str) -> tuple[list[dict], str | None]:
    """The flat records an infer request stands for, and the request's id."""
    if not isinstance(body, Mapping) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise InferError("an infer request is an object with a non-empty 'inputs' list")
    request_id = body.get("id")
    columns: dict[str, list] = {}
    for tensor in body["inputs"]:
        if not isinstance(tensor, Mapping) or not isinstance(tensor.get("name"), str):
            raise InferError("every input needs a 'name'")
        data = _flatten(tensor.get("data"))
        if not isinstance(data, list):
            raise InferError(f"input {tensor['name']!r}: 'data' must be a list")
        _check_shape(tensor["name"], tensor.get("shape"), len(data))
        columns[tensor["name"]] = data
    sizes = {len(values) for values in columns.values()}
    if len(sizes) != 1:
        raise InferError(f"inputs have different lengths: {sorted(sizes)}")
    rows = sizes.pop()
    ids = columns.pop(id_field, None) or [f"{request_id or 'row'}-{i}" for i in range(rows)]
    records = [{id_field: ids[i], "data": {name: values[i] for name, values in columns.items()}} for i in range(rows)]
    return records, request_id


@dataclass
class Wanted:
    """The outputs an infer request asks for (None: all) and which come as binary data."""

    names: list[str] | None = None
    binary: dict[str, bool] = field(default_factory=dict)
    binary_default: bool = False  # the request's binary_data_output

    def is_binary(self, name: str) -> bool:
        return self.binary.get(name, self.binary_default)


def _flag(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InferError(f"{where} must be true or false, got {value!r}")
    return value


def wanted_outputs(body: Mapping, model, stated: Mapping[str, str | None]) -> Wanted:
    """The request's `outputs` and binary flags; an output the model states none of is an InferError
    (checked before scoring: only a model that states its outputs, `serve.declared`)."""
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise InferError("the request's 'parameters' must be an object")
    wanted = Wanted(binary_default=_flag(parameters.get("binary_data_output"), "binary_data_output"))
    outputs = body.get("outputs")
    if outputs is None:
        return wanted
    if not isinstance(outputs, list) or not all(isinstance(o, Mapping) and isinstance(o.get("name"), str)
                                                for o in outputs):
        raise InferError("'outputs' must be a list of objects with a 'name'")
    wanted.names = [o["name"] for o in outputs]
    unknown = [n for n in wanted.names if stated and n not in stated and n not in META_OUTPUTS]
    if unknown:
        raise InferError(f"model {model.name} {model.version} has no output {unknown[0]!r} "
                         f"(it has {', '.join([*stated, *META_OUTPUTS])})")
    for o in outputs:
        settings = o.get("parameters") or {}
        if not isinstance(settings, Mapping):
            raise InferError(f"output {o['name']!r}: 'parameters' must be an object")
        if "binary_data" in settings:
            wanted.binary[o["name"]] = _flag(settings["binary_data"], f"output {o['name']!r}: binary_data")
    return wanted


# --- the response --------------------------------------------------------------------

def _fits(datatype: str, present: list) -> bool:
    """Whether `present` (values, no None) can be a tensor of `datatype`."""
    if datatype == "BYTES":
        return True
    if datatype == "BOOL":
        return all(isinstance(v, bool) for v in present)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    if datatype == "FP64":
        return numbers
    return numbers and all(isinstance(v, int) and _INT64[0] <= v < _INT64[1] for v in present)


def _column(values: list, stated: str | None) -> tuple[str, list]:
    """One output's datatype and values: the stated type where the values fit it, else what they are."""
    present = [v for v in values if v is not None]
    datatype = DATATYPES.get(stated) if stated else None
    if datatype is None or not _fits(datatype, present):
        datatype = next((t for t in ("BOOL", "INT64", "FP64") if present and _fits(t, present)), "BYTES")
    if datatype in ("INT64", "BOOL") and len(present) < len(values):
        datatype = "FP64"  # a row without a value: NaN (binary) or null
    if datatype == "FP64":
        values = [None if v is None else float(v) for v in values]
    elif datatype == "BYTES":
        values = [v if v is None or isinstance(v, str) else str(v) for v in values]
    return datatype, values


def row_entries(model, documents: Sequence[Mapping], rejected: Sequence[Mapping], rows: int) -> list[dict]:
    """The model's entry for each of the request's `rows`, in order: a scored row's, and for a row the server
    rejected (its id missing, repeated, ...) `_error` with the reason and `_error_kind` "rejected", so that
    every output has a value (or null) per input row."""
    reasons = {r["position"]: r["reason"] for r in rejected}
    scored = (document["results"][model.name][model.version] for document in documents)
    return [error_entry("rejected", reasons[row]) if row in reasons else next(scored) for row in range(rows)]


def infer_response(model, entries: list[dict], request_id: str | None, bundle: str, rejected: list,
                   stated: Mapping[str, str | None] | None = None, wanted: Wanted | None = None) -> dict:
    """The response to an infer request from the model's result entries (request order): the `wanted`
    outputs, else the `stated` ones and every other key a row has."""
    stated = stated or {}
    if wanted is not None and wanted.names is not None:
        names = wanted.names
    else:
        names = list(stated)
        for entry in entries:
            names.extend(k for k in entry if k not in names)
    outputs = []
    for name in names:
        values = [entry.get(name) for entry in entries]
        if name == REASONS_KEY:  # a list per row: its JSON text
            values = [None if v is None else dumps(v).decode() for v in values]
        datatype, values = _column(values, stated.get(name))
        outputs.append({"name": name, "datatype": datatype, "shape": [len(values)], "data": values})
    response = {"model_name": model.name, "model_version": model.version, "outputs": outputs,
                "parameters": {"bundle": bundle, "status": model.status}}
    if request_id is not None:
        response["id"] = request_id
    if rejected:
        response["parameters"]["rejected"] = rejected
    return response


def _pack(datatype: str, values: list) -> bytes:
    """An output's values as binary data (as `_column` typed them)."""
    if datatype == "BYTES":
        encoded = [b"" if v is None else v.encode() for v in values]
        return b"".join(struct.pack("<I", len(e)) + e for e in encoded)
    if datatype == "FP64":
        values = [math.nan if v is None else v for v in values]
    return struct.pack(f"<{len(values)}{_FORMATS[datatype]}", *values)


def encode_response(response: dict, wanted: Wanted | None) -> tuple[bytes, dict[str, str]]:
    """An infer response's body and headers: JSON, or JSON then the outputs wanted as binary data."""
    chunks = []
    for output in response["outputs"]:
        if wanted is not None and wanted.is_binary(output["name"]):
            raw = _pack(output["datatype"], output.pop("data"))
            output["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
    head = dumps(response)
    if not chunks:
        return head, {"content-type": "application/json"}
    return head + b"".join(chunks), {"content-type": "application/octet-stream",
                                     "inference-header-content-length": str(len(head))}
