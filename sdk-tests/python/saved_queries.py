"""The Python SDK's saved-query methods (`keen` 0.7.0, unchanged) against Keyhole.

Configured through KEEN_BASE_URL, KEEN_PROJECT_ID, KEEN_WRITE_KEY, KEEN_READ_KEY, KEEN_MASTER_KEY.
"""
import os

from keen import exceptions
from keen.client import KeenClient

client = KeenClient(os.environ["KEEN_PROJECT_ID"], write_key=os.environ["KEEN_WRITE_KEY"],
                    read_key=os.environ["KEEN_READ_KEY"], master_key=os.environ["KEEN_MASTER_KEY"],
                    base_url=os.environ["KEEN_BASE_URL"])
saved_queries = client.saved_queries

client.add_events({"orders": [{"amount": 5, "vendor": "acme"}, {"amount": 7, "vendor": "acme"},
                            {"amount": 100, "vendor": "globex"}]})

query = {"analysis_type": "sum", "event_collection": "orders", "target_property": "amount"}
created = saved_queries.create("revenue", {"refresh_rate": 0, "query": query,
                                                 "metadata": {"display_name": "Revenue"}})
assert created["query_name"] == "revenue", created
assert saved_queries.get("revenue")["query"]["target_property"] == "amount"
assert [saved["query_name"] for saved in saved_queries.all()] == ["revenue"]
assert saved_queries.results("revenue")["result"] == 112

# update(): the SDK reads the definition back and PUTs it with the changes merged in.
updated = saved_queries.update("revenue", {"query": {"filters": [
    {"property_name": "vendor", "operator": "eq", "property_value": "acme"}]}})
assert updated["metadata"]["display_name"] == "Revenue", updated
assert saved_queries.results("revenue")["result"] == 12

full = saved_queries.update_full("revenue", {"query": dict(query, analysis_type="count")})
assert full["query"]["analysis_type"] == "count" and full["metadata"] == {}, full
assert saved_queries.results("revenue")["result"] == 3

assert saved_queries.delete("revenue") is True
try:
    saved_queries.get("revenue")
    raise AssertionError("a deleted saved query was found")
except exceptions.KeenApiError as error:
    assert "ResourceNotFoundError" in str(error), str(error)
print("ok")
