"""OCPP-J framing and validation without a socket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.ocpp import ocppj
from controller.ocpp.ocppj import Call, CallError, CallResult, Codec, FrameError, RpcError, check, is_datetime
from controller.ocpp.v16.keys import KEYS, KeyStore


@pytest.mark.parametrize(
    ("payload", "kind", "name16", "name201"),
    [
        ({"type": "Sideways"}, "property", "PropertyConstraintViolation", "PropertyConstraintViolation"),
        ({}, "occurrence", "OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
        ({"type": 5}, "type", "TypeConstraintViolation", "TypeConstraintViolation"),
        ({"type": "Soft", "extra": 1}, "format", "FormationViolation", "FormatViolation"),
    ],
)
def test_schema_errors_get_the_code_name_of_each_version(
    payload: dict[str, object], kind: str, name16: str, name201: str
) -> None:
    with pytest.raises(RpcError) as caught:
        check("1.6", "Reset", payload)
    assert caught.value.kind == kind
    assert json.loads(Codec("1.6").error("x", kind))[2] == name16
    assert json.loads(Codec("2.0.1").error("x", kind))[2] == name201


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2026-11-21T10:00:00Z", True),
        ("2026-11-21T10:00:00.123+01:00", True),
        ("2026-11-21T10:00:00", False),  # no timezone
        ("2026-11-21 10:00:00Z", False),
        ("2026-13-21T10:00:00Z", False),
        ("yesterday", False),
    ],
)
def test_date_times_must_be_rfc3339_with_a_timezone(text: str, valid: bool) -> None:
    assert is_datetime(text) is valid


def test_a_start_transaction_with_a_naive_timestamp_is_refused_before_sending() -> None:
    payload = {"connectorId": 1, "idTag": "X", "meterStart": 0, "timestamp": "2026-11-21T10:00:00"}
    with pytest.raises(RpcError):
        Codec("1.6").call("StartTransaction", payload)


def test_decode_each_message_type() -> None:
    codec = Codec("1.6")
    assert codec.decode('[2,"a","Heartbeat",{}]') == Call("a", "Heartbeat", {})
    assert codec.decode('[3,"a",{"x":1}]') == CallResult("a", {"x": 1})
    assert codec.decode('[4,"a","NotSupported","no",{}]') == CallError("a", "NotSupported", "no", {})


@pytest.mark.parametrize(
    ("text", "reply_code"),
    [
        ("not json", None),  # 1.6: nothing to answer (no message id)
        ("[1]", None),
        ('[9,"a",{}]', "ProtocolError"),
        ('[2,"a","Reset"]', "FormationViolation"),
        ('[2,"a","Reset",[]]', "FormationViolation"),
    ],
)
def test_unusable_frames_raise_with_the_reply_due(text: str, reply_code: str | None) -> None:
    with pytest.raises(FrameError) as caught:
        Codec("1.6").decode(text)
    reply = caught.value.reply
    assert (json.loads(reply)[2] if reply else None) == reply_code


def test_2_0_1_answers_a_non_json_frame_with_message_id_minus_one() -> None:
    with pytest.raises(FrameError) as caught:
        Codec("2.0.1").decode("{{{")
    assert caught.value.reply is not None
    assert json.loads(caught.value.reply)[:3] == [4, "-1", "FormatViolation"]


def test_key_store_rules_and_persistence() -> None:
    saved: dict[str, str] = {}
    keys = KeyStore({"MeterValueSampleInterval": "10", "HeartbeatInterval": "oops"}, {}, saved.__setitem__)
    assert keys.number("MeterValueSampleInterval") == 10  # stored value wins
    assert keys.get("HeartbeatInterval") == KEYS["HeartbeatInterval"].default  # a bad stored value is ignored
    assert keys.change("NoSuchKey", "1") == "NotSupported"
    assert keys.change("NumberOfConnectors", "3") == "Rejected"
    assert keys.change("ConnectionTimeOut", "abc") == "Rejected"
    assert keys.change("MeterValuesSampledData", "Voltage,SoC") == "Rejected"
    assert keys.change("StopTransactionOnEVSideDisconnect", "false") == "Rejected"
    assert keys.change("WebSocketPingInterval", "10") == "RebootRequired"
    assert keys.change("LocalPreAuthorize", "TRUE") == "Accepted"
    assert saved == {"WebSocketPingInterval": "10", "LocalPreAuthorize": "true"}
    known, unknown = keys.report(["LocalPreAuthorize", "Nope"])
    assert known == [{"key": "LocalPreAuthorize", "readonly": False, "value": "true"}] and unknown == ["Nope"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from([None, 1, 2]), st.data())
def test_large_frames_parse_in_pieces_exactly_as_json_loads(
    value: Any, indent: int | None, data: st.DataObject
) -> None:
    text = json.dumps(value, indent=indent)
    if data.draw(st.booleans()):  # a damaged text: both parsers must refuse it, or agree
        at = data.draw(st.integers(0, len(text)))
        text = (
            text[:at] + data.draw(st.sampled_from(["", ",", "]", "}", ":", '"', "x", " "])) + text[at + 1 :]
        )
    with _split_everything():
        try:
            expected = json.loads(text)
        except ValueError:
            with pytest.raises(ValueError):
                ocppj.loads(text)
        else:
            assert ocppj.loads(text) == expected


def test_a_large_send_local_list_decodes_as_a_call() -> None:
    entries = [{"idTag": f"{n:08X}", "idTagInfo": {"status": "Accepted"}} for n in range(5000)]
    frame = json.dumps(
        [
            2,
            "id-1",
            "SendLocalList",
            {"listVersion": 1, "updateType": "Full", "localAuthorizationList": entries},
        ]
    )
    assert len(frame) > ocppj.LARGE_FRAME
    call = Codec("1.6").decode(frame)
    assert isinstance(call, Call) and call.payload["localAuthorizationList"] == entries
    with pytest.raises(FrameError):
        Codec("1.6").decode(frame[:-1])


class _split_everything:
    """Every text takes the piecewise path."""

    def __enter__(self) -> None:
        self.saved = ocppj.LARGE_FRAME
        ocppj.LARGE_FRAME = 0

    def __exit__(self, *_: object) -> None:
        ocppj.LARGE_FRAME = self.saved
