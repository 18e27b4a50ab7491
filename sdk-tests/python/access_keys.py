"""The Python SDK's access-key methods (`keen` 0.7.0, unchanged) against Keyhole, then the key it created
used by the same SDK to write and query.

Configured through KEEN_BASE_URL, KEEN_PROJECT_ID, KEEN_WRITE_KEY, KEEN_READ_KEY, KEEN_MASTER_KEY.
"""
import os

import keen
from keen import exceptions
from keen.client import KeenClient

ACME = {"property_name": "vendor_id", "operator": "eq", "property_value": "acme"}
OPTIONS = {"queries": {"filters": [ACME]}, "writes": {"autofill": {"vendor_id": "acme"}}}

created = keen.create_access_key("acme", True, ["queries", "writes"], OPTIONS)
key = created["key"]
assert len(key) == 64 and created["name"] == "acme" and created["is_active"] is True, created
assert any(listed["key_prefix"] == key[:8] for listed in keen.list_access_keys())
assert keen.get_access_key(key)["permitted"] == ["queries", "writes"]
assert keen.update_access_key_name(key, "acme renamed")["name"] == "acme renamed"
assert "schema" in keen.add_access_key_permissions(key, ["schema"])["permitted"]
assert "schema" not in keen.remove_access_key_permissions(key, ["schema"])["permitted"]
assert keen.update_access_key_permissions(key, ["queries", "writes"])["permitted"] == ["queries", "writes"]
assert keen.update_access_key_options(key, OPTIONS)["options"]["queries"]["filters"] == [ACME]
full = keen.update_access_key_full(key, "acme", True, ["queries", "writes"], OPTIONS)
assert full["name"] == "acme" and full["options"]["writes"]["autofill"] == {"vendor_id": "acme"}, full

# The key, used by the same SDK: its writes are autofilled, its reads filtered.
tenant = KeenClient(os.environ["KEEN_PROJECT_ID"], write_key=key, read_key=key, base_url=os.environ["KEEN_BASE_URL"])
tenant.add_event("orders", {"vendor_id": "globex", "n": 1})
keen.add_event("orders", {"vendor_id": "globex", "n": 2})
assert tenant.count("orders") == 1
assert keen.count("orders") == 2
assert tenant.select_unique("orders", "vendor_id") == ["acme"]

assert keen.revoke_access_key(key)["is_active"] is False
try:
    tenant.count("orders")
except exceptions.KeenApiError as error:
    assert "InvalidApiKeyError" in str(error), str(error)
else:
    raise SystemExit("a revoked key could still query")
assert keen.unrevoke_access_key(key)["is_active"] is True
assert tenant.count("orders") == 1

assert keen.delete_access_key(key) is True
try:
    keen.get_access_key(key)
except exceptions.KeenApiError as error:
    assert "ResourceNotFoundError" in str(error), str(error)
else:
    raise SystemExit("a deleted key was still found")
print("python sdk access keys ok")
