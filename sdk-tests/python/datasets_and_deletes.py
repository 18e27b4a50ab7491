"""The Python SDK's cached-dataset methods and delete_events (`keen` 0.7.0, unchanged) against Keyhole.

Configured through KEEN_BASE_URL, KEEN_PROJECT_ID, KEEN_WRITE_KEY, KEEN_READ_KEY, KEEN_MASTER_KEY.
"""
import datetime
import os

from keen import exceptions
from keen.client import KeenClient

client = KeenClient(os.environ["KEEN_PROJECT_ID"], write_key=os.environ["KEEN_WRITE_KEY"],
                    read_key=os.environ["KEEN_READ_KEY"], master_key=os.environ["KEEN_MASTER_KEY"],
                    base_url=os.environ["KEEN_BASE_URL"])
datasets = client.cached_datasets

now = datetime.datetime.now(datetime.timezone.utc)
yesterday = (now - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
client.add_events({"orders": [
    {"amount": 5, "vendor": "acme", "keen": {"timestamp": yesterday}},
    {"amount": 7, "vendor": "acme"},
    {"amount": 100, "vendor": "globex"},
    {"amount": 1, "vendor": {"id": 3}},
]})

query = {"analysis_type": "sum", "event_collection": "orders", "target_property": "amount",
         "timeframe": "this_7_days", "interval": "daily", "timezone": "UTC"}
created = datasets.create("revenue", query, "vendor", "Revenue by vendor")
assert created["dataset_name"] == "revenue" and created["index_by"] == ["vendor"], created
assert datasets.get("revenue")["display_name"] == "Revenue by vendor"
assert [dataset["dataset_name"] for dataset in datasets.all()["datasets"]] == ["revenue"]

acme = datasets.results("revenue", "acme", "this_7_days")["result"]
assert len(acme) == 7, acme
assert [bucket["value"] for bucket in acme[-2:]] == [5, 7], acme
absolute = {"start": (now - datetime.timedelta(days=2)).strftime("%Y-%m-%dT00:00:00.000Z"),
            "end": (now + datetime.timedelta(days=1)).strftime("%Y-%m-%dT00:00:00.000Z")}
assert sum(bucket["value"] for bucket in datasets.results("revenue", "globex", absolute)["result"]) == 100

# Several index properties: the SDK JSON-encodes a dict.
datasets.create("by-nested", query, ["vendor.id"], "By vendor id")
nested = datasets.results("by-nested", {"vendor.id": 3}, "this_7_days")["result"]
assert sum(bucket["value"] for bucket in nested) == 1, nested

assert datasets.delete("revenue") is True
try:
    datasets.get("revenue")
    raise AssertionError("a deleted dataset was found")
except exceptions.KeenApiError as error:
    assert "ResourceNotFoundError" in str(error), str(error)

# delete_events with filters and a timeframe removes exactly the matching events.
client.delete_events("orders", timeframe="this_7_days", timezone="UTC",
                     filters=[{"property_name": "vendor", "operator": "eq", "property_value": "acme"}])
assert client.count("orders", timeframe="this_7_days") == 2
assert client.count("orders", timeframe="this_7_days",
                    filters=[{"property_name": "vendor", "operator": "eq", "property_value": "acme"}]) == 0
print("ok")
