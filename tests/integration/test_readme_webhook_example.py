"""The README's "Sending the webhook" example: its jq filter, run by jq on what `boundaries ingest` prints,
gives a body a real producer queues (202) with the Bearer secret, and a second send is a duplicate."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration import test_producer_support as support

pytestmark = pytest.mark.integration
producer_factory = support.producer_factory  # the fixture

README = Path(__file__).resolve().parents[2] / "README.md"


def _example_filter() -> str:
    text = README.read_text()
    block = text[text.index("<!-- webhook-example:start -->"):text.index("<!-- webhook-example:end -->")]
    assert "Authorization: Bearer $BOUNDARIES_WEBHOOK_SECRET" in block
    assert "/webhooks/supabase" in block
    return re.search(r"jq '(.*?)' ingest\.json", block, re.S).group(1)


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_readme_webhook_example_queues_the_ingested_version(producer_factory):
    p = producer_factory(webhook_schemas=("captionacc_production",))
    ingest_output = {"tenant_id": str(uuid.uuid4()), "video_id": str(uuid.uuid4()), "version": 1,
                     "total_frames": 120, "chunk_count": 7, "frames_prefix": "t/v/cropped_frames_v1-x/",
                     "layout_db_key": "t/v/cropped_frames_v1-x/layout.db", "damaged_packets": 0}
    body = subprocess.run(["jq", _example_filter()], input=json.dumps(ingest_output), capture_output=True,
                          text=True, check=True).stdout

    first = p.post(content=body.encode(), headers={"Content-Type": "application/json"})
    again = p.post(content=body.encode(), headers={"Content-Type": "application/json"})

    assert first.status_code == 202, first.text
    assert again.status_code == 200 and "duplicate" in again.text, again.text
    assert len(p.queued()) == 1
