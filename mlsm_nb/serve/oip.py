"""The Open Inference Protocol (KServe v2, MLServer) on top of the record format.

An infer request's `inputs` are columns (one tensor per field, `shape` [n]
or [n, 1], checked against its data); they become n flat records. The record ids come from an input named like the
id field when there is one, else from the request id and the row position.
The response has one output tensor per key the model returned (plus `_status`,
`_error`, `_error_kind`), rows in request order, null where a row has no value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .._version import __version__

DATATYPES = {"int": "INT64", "float": "FP64", "str": "BYTES", "bool": "BOOL"}


class InferError(ValueError):
    """An infer request that does not follow the protocol (one line, for a 400)."""


def server_metadata() -> dict:
    return {"name": "mlsm-nb", "version": __version__, "extensions": []}


def model_metadata(model, versions: Sequence[str]) -> dict:
    """Metadata of a model: its fields as input tensors."""
    return {"name": model.name, "versions": list(versions), "platform": "mlsm-nb",
            "inputs": [{"name": s.name, "datatype": DATATYPES[s.type], "shape": [-1]} for s in model.specs],
            "outputs": [], "parameters": {"status": model.status, "kind": model.kind}}


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


def _datatype(values: list) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "BOOL"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "INT64"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "FP64"
    return "BYTES"


def infer_response(model, entries: list[dict], request_id: str | None, bundle: str, rejected: list) -> dict:
    """The response to an infer request from the model's result entries (request order)."""
    keys: list[str] = []
    for entry in entries:
        keys.extend(k for k in entry if k not in keys)
    outputs = []
    for key in keys:
        values = [entry.get(key) for entry in entries]
        datatype = _datatype(values)
        if datatype == "BYTES":
            values = [v if v is None or isinstance(v, str) else str(v) for v in values]
        outputs.append({"name": key, "datatype": datatype, "shape": [len(values)], "data": values})
    response = {"model_name": model.name, "model_version": model.version, "outputs": outputs,
                "parameters": {"bundle": bundle, "status": model.status}}
    if request_id is not None:
        response["id"] = request_id
    if rejected:
        response["parameters"]["rejected"] = rejected
    return response
