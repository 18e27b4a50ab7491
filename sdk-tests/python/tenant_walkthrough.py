"""The tenant walkthrough of docs/tenants.md, run as written: a backend onboards a customer with one call
(plain HTTP through `requests`, which the `keen` SDK already depends on), hands the tenant's keys to the
official Python SDK (`keen` 0.7.0, unchanged) to write and query, suspends and resumes the customer, then
offboards it with an erase and reads the receipt again.

Configured through KEEN_BASE_URL, KEEN_PROJECT_ID and KEEN_MASTER_KEY.
"""
import os

import requests
from keen import exceptions
from keen.client import KeenClient

BASE_URL = os.environ["KEEN_BASE_URL"]
PROJECT_ID = os.environ["KEEN_PROJECT_ID"]
MASTER_KEY = os.environ["KEEN_MASTER_KEY"]
PROJECT = f"{BASE_URL}/3.0/projects/{PROJECT_ID}"


def admin(method, path, body=None):
    """One tenant call with the master key (the organization key works as well)."""
    response = requests.request(method, PROJECT + path, json=body, headers={"Authorization": MASTER_KEY})
    response.raise_for_status()
    return response.json() if response.content else None


# Once per project: which property says whose an event is.
admin("PUT", "/tenancy", {"property": "customer.id"})

# Onboarding: one call per customer; store both keys with the customer (they are shown only here).
acme = admin("POST", "/tenants", {"id": "acme", "name": "Acme Inc.",
                                  "options": {"limits": {"queries_per_day": 10000}}})
globex = admin("POST", "/tenants", {"id": "globex", "name": "Globex"})

# The tenant's keys in the official SDK: writes are stamped, reads are filtered.
acme_client = KeenClient(PROJECT_ID, write_key=acme["write_key"], read_key=acme["read_key"], base_url=BASE_URL)
globex_client = KeenClient(PROJECT_ID, write_key=globex["write_key"], read_key=globex["read_key"],
                           base_url=BASE_URL)
acme_client.add_event("orders", {"amount": 30})
acme_client.add_event("orders", {"amount": 12, "customer": {"id": "globex"}})  # stamped acme all the same
globex_client.add_event("orders", {"amount": 7})
assert acme_client.count("orders") == 2
assert acme_client.select_unique("orders", "customer.id") == ["acme"]
assert globex_client.count("orders") == 1

# Usage, per tenant.
usage = admin("GET", "/tenants/acme")["usage"]
assert usage["events_written"] == 2 and usage["events_stored"] == 2, usage

# A customer who stops paying: suspended at once, restored unchanged.
admin("PATCH", "/tenants/acme", {"suspended": True})
try:
    acme_client.count("orders")
except exceptions.KeenApiError as error:
    assert "TenantSuspendedError" in str(error), str(error)
else:
    raise SystemExit("a suspended tenant's key could still query")
admin("PATCH", "/tenants/acme", {"suspended": False})
assert acme_client.count("orders") == 2

# The end of the contract: revoke everything and erase the customer's events, with a receipt.
receipt = admin("DELETE", "/tenants/acme?erase=true")
assert receipt["tenant"] == "acme" and receipt["collections"] == {"orders": 2}, receipt
assert admin("GET", f"/tenants/erasures/{receipt['receipt_id']}") == receipt
assert globex_client.count("orders") == 1
try:
    acme_client.count("orders")
except exceptions.KeenApiError as error:
    assert "InvalidApiKeyError" in str(error), str(error)
else:
    raise SystemExit("an erased tenant's key could still query")
print("tenant walkthrough ok:", receipt["receipt_id"])
