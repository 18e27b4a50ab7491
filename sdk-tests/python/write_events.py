"""Writes events to a Keyhole server with the official Python SDK, `keen` 0.7.0, unchanged.

Configured the way a Keen user would point it elsewhere: KEEN_BASE_URL, KEEN_PROJECT_ID, KEEN_WRITE_KEY.
Exits non-zero (with a traceback) on any failure; the Rust test then checks what was stored.
"""
import datetime

import keen
from keen.client import KeenClient
from keen import exceptions

keen.add_event("sdk_python", {"source": "add_event", "n": 1, "user": {"id": "u1"}})
keen.add_event(
    "sdk_python",
    {"source": "add_event_timestamp"},
    timestamp=datetime.datetime(2024, 1, 2, 3, 4, 5, 678000),
)
result = keen.add_events({
    "sdk_python": [{"source": "add_events", "n": 2}, {"source": "add_events", "n": 3}],
    "sdk python other": [{"x": 1}],
})
assert result == {
    "sdk_python": [{"success": True}, {"success": True}],
    "sdk python other": [{"success": True}],
}, result

# An explicit client with base_url, as the README of the SDK documents.
import os
client = KeenClient(
    project_id=os.environ["KEEN_PROJECT_ID"],
    write_key=os.environ["KEEN_WRITE_KEY"],
    base_url=os.environ["KEEN_BASE_URL"],
)
client.add_event("sdk_python", {"source": "client.add_event"})

# Keen-style errors reach the SDK as KeenApiError with Keen's error code.
try:
    keen.add_event("sdk_python", {"bad.name": 1})
except exceptions.KeenApiError as error:
    assert "InvalidPropertyNameError" in str(error), str(error)
else:
    raise SystemExit("an invalid property name was accepted")

print("python sdk ok")
