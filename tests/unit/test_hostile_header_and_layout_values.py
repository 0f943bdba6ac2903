"""Hostile values in webhook headers and layout.db rows give the documented error,
never an unrelated exception (a 5xx from the producer, a transient retry loop in the worker)."""

from __future__ import annotations

import sqlite3
import time

import pytest
from pydantic import SecretStr

from boundaries.errors import LayoutError
from boundaries.frames.layoutdb import parse_layout_db
from producer.auth import Unauthorized, check_signature, sign

HMAC = SecretStr("whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=")


@pytest.mark.parametrize("ts", ["1" + "0" * 400, "-" + "9" * 400])
def test_huge_webhook_timestamp_is_unauthorized_not_overflow(ts):
    body = b"{}"
    headers = {"webhook-id": "msg_1", "webhook-timestamp": ts,
               "webhook-signature": sign(HMAC, "msg_1", int(time.time()), body)}
    with pytest.raises(Unauthorized, match="webhook-timestamp"):
        check_signature(headers, body, HMAC, tolerance_s=300)


def _layout(**vals) -> bytes:
    row = dict(frame_width=100, frame_height=100, crop_left=0, crop_top=0, crop_right=10, crop_bottom=10) | vals
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE video_layout_config (id INTEGER, frame_width REAL, frame_height REAL, crop_left REAL,"
                " crop_top REAL, crop_right REAL, crop_bottom REAL, anchor_type TEXT, ocr_visualization_image BLOB)")
    con.execute("INSERT INTO video_layout_config VALUES (1, :frame_width, :frame_height, :crop_left, :crop_top,"
                " :crop_right, :crop_bottom, 'left', x'89504e47')", row)
    con.commit()
    return con.serialize()


@pytest.mark.parametrize("field", ["frame_width", "frame_height", "crop_right", "crop_left"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_layout_numbers_are_layout_errors(field, value):
    with pytest.raises(LayoutError, match=field.split("_")[0]):
        parse_layout_db(_layout(**{field: value}), source="layout.db")
