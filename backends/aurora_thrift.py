"""Thrift's TJSON protocol and the few Aurora structures the ``aurora`` backend needs.

Written by hand from Thrift's ``TJSONProtocol`` (the C++/Java/Python wire format) and Apache
Aurora's ``api.thrift`` (field ids below); no generated code.

Wire format, compact JSON, UTF-8:

- message: ``[1,"method",type,seqid,{args}]`` (type 1 CALL, 2 REPLY, 3 EXCEPTION, 4 ONEWAY);
  a reply's struct holds the return value in field 0.
- struct: ``{"<field id>":{"<type>":value},...}``; types ``tf`` (bool as 1/0), ``i8``, ``i16``,
  ``i32``, ``i64``, ``dbl`` (``"NaN"``, ``"Infinity"``, ``"-Infinity"`` quoted), ``str``
  (binary is base64 in a ``str``), ``rec`` (struct, union), ``lst``, ``set``, ``map``.
- list, set: ``["<elem type>",count,elem,...]``; map: ``["<key type>","<value type>",count,
  {"key":value,...}]`` (keys are always JSON strings).

Values to encode are typed pairs ``(type, raw)``: a struct's raw value is ``{field id: (type,
raw)}``, a list's or set's is ``(elem type, [raw, ...])``, a map's is ``(key type, value type,
{raw: raw})``. Decoding needs no schema: structs become ``{field id: value}``, lists and sets
become lists, maps dicts, ``tf`` a bool. Malformed input raises ``ValueError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

VERSION = 1
CALL, REPLY, EXCEPTION, ONEWAY = 1, 2, 3, 4
INTEGER_BITS = {"i8": 8, "i16": 16, "i32": 32, "i64": 64}

TValue = tuple[str, Any]
Struct = dict[int, TValue]


# --- encoding ------------------------------------------------------------------------------
def encode_value(ttype: str, raw: Any) -> Any:
    """The JSON-ready form of one typed value."""
    if ttype == "rec":
        return {str(fid): {t: encode_value(t, v)} for fid, (t, v) in raw.items()}
    if ttype in ("lst", "set"):
        etype, items = raw
        return [etype, len(items), *(encode_value(etype, item) for item in items)]
    if ttype == "map":
        ktype, vtype, items = raw
        pairs = {_encode_key(ktype, k): encode_value(vtype, v) for k, v in items.items()}
        return [ktype, vtype, len(items), pairs]
    if ttype == "tf":
        return 1 if raw else 0
    if ttype in INTEGER_BITS:
        bits = INTEGER_BITS[ttype]
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"{ttype} needs an int, got {raw!r}")
        if not -(2 ** (bits - 1)) <= raw < 2 ** (bits - 1):
            raise ValueError(f"{raw} is out of range for {ttype}")
        return raw
    if ttype == "dbl":
        value = float(raw)
        if math.isnan(value):
            return "NaN"
        return value if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")
    if ttype == "str":
        if not isinstance(raw, str):
            raise ValueError(f"str needs a str, got {raw!r}")
        return raw
    raise ValueError(f"unsupported thrift type {ttype!r}")


def _encode_key(ktype: str, key: Any) -> str:
    if ktype == "rec" or ktype in ("lst", "set", "map"):
        raise ValueError(f"map keys of type {ktype} are not supported")
    encoded = encode_value(ktype, key)
    return encoded if isinstance(encoded, str) else json.dumps(encoded)


def encode_message(name: str, mtype: int, seqid: int, body: Struct) -> bytes:
    """One TJSON message, as sent on the wire."""
    message = [VERSION, name, mtype, seqid, encode_value("rec", body)]
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


# --- decoding ------------------------------------------------------------------------------
def decode_value(ttype: str, value: Any) -> Any:
    """The Python form of one JSON value of thrift type ``ttype``."""
    try:
        if ttype == "rec":
            return {int(fid): _decode_field(field) for fid, field in _object(value).items()}
        if ttype in ("lst", "set"):
            etype, count, *items = _array(value)
            _check_count(count, items)
            return [decode_value(etype, item) for item in items]
        if ttype == "map":
            ktype, vtype, count, pairs = _array(value)
            _check_count(count, _object(pairs))
            return {_decode_key(ktype, k): decode_value(vtype, v) for k, v in pairs.items()}
        if ttype == "tf":
            return bool(_integer(value))
        if ttype in INTEGER_BITS:
            return _integer(value)
        if ttype == "dbl":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(f"bad double {value!r}")
            return float(value)
        if ttype in ("str", "uid"):
            if not isinstance(value, str):
                raise ValueError(f"bad string {value!r}")
            return value
    except (TypeError, ValueError) as exc:
        raise ValueError(f"malformed TJSON {ttype} value: {exc}") from exc
    raise ValueError(f"unknown thrift type {ttype!r}")


def _decode_field(field: Any) -> Any:
    (ttype, value), *extra = _object(field).items()
    if extra:
        raise ValueError("a field holds more than one typed value")
    return decode_value(ttype, value)


def _decode_key(ktype: str, key: str) -> Any:
    return key if ktype in ("str", "uid") else decode_value(ktype, json.loads(key))


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    return value


def _array(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"expected an array, got {type(value).__name__}")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, str):  # written quoted in key position by some writers
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"bad integer {value!r}")
    return value


def _check_count(count: Any, items: Any) -> None:
    if _integer(count) != len(items):
        raise ValueError(f"count {count} but {len(items)} elements")


def decode_message(data: bytes) -> tuple[str, int, int, dict[int, Any]]:
    """``(method name, message type, seqid, body struct)`` of one TJSON message."""
    try:
        message = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(message, list) or len(message) != 5:
        raise ValueError("a TJSON message is an array of 5 elements")
    version, name, mtype, seqid, body = message
    if version != VERSION:
        raise ValueError(f"unsupported TJSON version {version!r}")
    if not isinstance(name, str):
        raise ValueError("the method name is not a string")
    return name, _integer(mtype), _integer(seqid), decode_value("rec", body)


# --- Aurora structures (api.thrift) --------------------------------------------------------
class ResponseCode:
    INVALID_REQUEST, OK, ERROR, WARNING, AUTH_FAILED = 0, 1, 2, 3, 4
    JOB_UPDATING_ERROR, ERROR_TRANSIENT = 5, 6
    NAMES: ClassVar[dict[int, str]] = {
        0: "INVALID_REQUEST",
        1: "OK",
        2: "ERROR",
        3: "WARNING",
        4: "AUTH_FAILED",
        5: "JOB_UPDATING_ERROR",
        6: "ERROR_TRANSIENT",
    }


class Status:
    """``ScheduleStatus`` values."""

    PENDING, STARTING, RUNNING, FINISHED, FAILED, KILLED, KILLING, LOST = 0, 1, 2, 3, 4, 5, 6, 7
    ASSIGNED, INIT, RESTARTING, PREEMPTING, THROTTLED, DRAINING, PARTITIONED = (
        9, 11, 12, 13, 16, 17, 18,
    )  # fmt: skip
    NAMES: ClassVar[dict[int, str]] = {
        0: "PENDING", 1: "STARTING", 2: "RUNNING", 3: "FINISHED", 4: "FAILED", 5: "KILLED",
        6: "KILLING", 7: "LOST", 9: "ASSIGNED", 11: "INIT", 12: "RESTARTING", 13: "PREEMPTING",
        16: "THROTTLED", 17: "DRAINING", 18: "PARTITIONED",
    }  # fmt: skip


def job_key(role: str, environment: str, name: str) -> Struct:
    """``JobKey{1: role, 2: environment, 3: name}``."""
    return {1: ("str", role), 2: ("str", environment), 3: ("str", name)}


def instance_key(job: Struct, instance_id: int) -> Struct:
    """``InstanceKey{1: jobKey, 2: instanceId}``."""
    return {1: ("rec", job), 2: ("i32", instance_id)}


def task_query(jobs: Iterable[Struct], statuses: Iterable[int]) -> Struct:
    """``TaskQuery{5: statuses (set<ScheduleStatus>), 11: jobKeys (set<JobKey>)}``."""
    return {5: ("set", ("i32", sorted(statuses))), 11: ("set", ("rec", list(jobs)))}


@dataclass(frozen=True, slots=True, kw_only=True)
class AuroraResponse:
    """``Response{1: responseCode, 3: result (union Result), 6: details list<ResponseDetail>}``."""

    code: int
    details: tuple[str, ...]
    result: Mapping[int, Any]

    @property
    def code_name(self) -> str:
        return ResponseCode.NAMES.get(self.code, f"code {self.code}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledTask:
    """The parts of ``ScheduledTask{1: AssignedTask{1: taskId, 6: instanceId}, 2: status}``."""

    task_id: str
    instance_id: int
    status: int


def parse_response(struct: Mapping[int, Any]) -> AuroraResponse:
    code = struct.get(1)
    details = struct.get(6) or []
    result = struct.get(3) or {}
    if not isinstance(code, int) or not isinstance(details, list) or not isinstance(result, dict):
        raise ValueError("not an Aurora Response")
    messages = tuple(str(d.get(1, "")) if isinstance(d, dict) else str(d) for d in details)
    return AuroraResponse(code=code, details=messages, result=result)


def parse_tasks(response: AuroraResponse) -> list[ScheduledTask]:
    """The tasks of a ``Result.scheduleStatusResult`` (field 3, its ``tasks`` field 1)."""
    tasks = (response.result.get(3) or {}).get(1) or []
    parsed = []
    for task in tasks:
        assigned = task.get(1) or {}
        instance_id, status = assigned.get(6), task.get(2)
        if not isinstance(instance_id, int) or not isinstance(status, int):
            raise ValueError("a ScheduledTask without instanceId or status")
        parsed.append(
            ScheduledTask(task_id=str(assigned.get(1, "")), instance_id=instance_id, status=status)
        )
    return parsed
