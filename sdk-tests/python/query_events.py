"""Queries a Keyhole server with the official Python SDK, `keen` 0.7.0, unchanged (it sends every query
as GET with JSON-encoded parameters). Writes a small hand-checked fixture first, then asserts each answer.

Configured through KEEN_BASE_URL, KEEN_PROJECT_ID, KEEN_WRITE_KEY, KEEN_READ_KEY.
"""
import keen

keen.add_events({
    "purchases": [
        {"price": 10, "user": {"id": "a"}, "country": "de", "keen": {"timestamp": "2024-01-01T10:00:00.000Z"}},
        {"price": 20, "user": {"id": "b"}, "country": "us", "keen": {"timestamp": "2024-01-02T10:00:00.000Z"}},
        {"price": 30, "user": {"id": "a"}, "country": "de", "keen": {"timestamp": "2024-01-02T12:00:00.000Z"}},
        {"price": "n/a", "user": {"id": "c"}, "country": "fr", "keen": {"timestamp": "2024-01-03T08:00:00.000Z"}},
    ],
    "signups": [
        {"user": {"id": user}, "keen": {"timestamp": "2024-01-01T09:00:00.000Z"}} for user in ["a", "b", "c", "d"]
    ],
})

TIMEFRAME = {"start": "2024-01-01T00:00:00.000Z", "end": "2024-01-04T00:00:00.000Z"}
C = "purchases"


def check(name, got, expected):
    assert got == expected, "%s: got %r, expected %r" % (name, got, expected)


check("count", keen.count(C, timeframe=TIMEFRAME), 4)
check("count filtered", keen.count(C, timeframe=TIMEFRAME, filters=[{"property_name": "country", "operator": "eq", "property_value": "de"}]), 2)
check("count group_by", keen.count(C, timeframe=TIMEFRAME, group_by="country"),
      [{"country": "de", "result": 2}, {"country": "fr", "result": 1}, {"country": "us", "result": 1}])
check("count group_by list", keen.count(C, timeframe=TIMEFRAME, group_by=["country", "user.id"]),
      [{"country": "de", "user.id": "a", "result": 2}, {"country": "fr", "user.id": "c", "result": 1}, {"country": "us", "user.id": "b", "result": 1}])
check("count order_by limit", keen.count(C, timeframe=TIMEFRAME, group_by="country",
                                         order_by={"property_name": "result", "direction": "DESC"}, limit=1),
      [{"country": "de", "result": 2}])
check("count interval", [bucket["value"] for bucket in keen.count(C, timeframe=TIMEFRAME, interval="daily")], [1, 2, 1])
# An offset in seconds, as the SDK passes it: UTC-8 moves the 2024-01-02T12:00Z event to Jan 2 04:00 local
# and the 2024-01-01T10:00Z one to Jan 1 02:00.
pacific = keen.count(C, timeframe={"start": "2024-01-01T08:00:00.000Z", "end": "2024-01-04T08:00:00.000Z"}, timezone=-28800, interval="daily")
check("count interval offset", [bucket["value"] for bucket in pacific], [1, 2, 1])
check("count_unique", keen.count_unique(C, "user.id", timeframe=TIMEFRAME), 3)
check("sum", keen.sum(C, "price", timeframe=TIMEFRAME), 60)
check("average", keen.average(C, "price", timeframe=TIMEFRAME), 20)
check("minimum", keen.minimum(C, "price", timeframe=TIMEFRAME), 10)
check("maximum", keen.maximum(C, "price", timeframe=TIMEFRAME), 30)
check("median", keen.median(C, "price", timeframe=TIMEFRAME), 20)
check("percentile", keen.percentile(C, "price", 75, timeframe=TIMEFRAME), 25)
check("select_unique", keen.select_unique(C, "country", timeframe=TIMEFRAME), ["de", "fr", "us"])
events = keen.extraction(C, timeframe=TIMEFRAME)
check("extraction", [event["price"] for event in events], [10, 20, 30, "n/a"])
check("extraction latest", [event["price"] for event in keen.extraction(C, timeframe=TIMEFRAME, latest=2)], [30, "n/a"])
check("extraction property_names", keen.extraction(C, timeframe=TIMEFRAME, latest=1, property_names=["user.id"]), [{"user": {"id": "c"}}])
steps = [
    {"event_collection": "signups", "actor_property": "user.id", "timeframe": TIMEFRAME},
    {"event_collection": "purchases", "actor_property": "user.id", "timeframe": TIMEFRAME},
    {"event_collection": "purchases", "actor_property": "user.id", "timeframe": TIMEFRAME,
     "filters": [{"property_name": "price", "operator": "gte", "property_value": 20}]},
]
check("funnel", keen.funnel(steps), [4, 3, 2])
whole = keen.funnel(steps, all_keys=True)
check("funnel steps echoed", [step["event_collection"] for step in whole["steps"]], ["signups", "purchases", "purchases"])
check("multi_analysis", keen.multi_analysis(C, {"n": {"analysis_type": "count"}, "total": {"analysis_type": "sum", "target_property": "price"}},
                                             timeframe=TIMEFRAME), {"n": 4, "total": 60})
check("multi_analysis group_by", keen.multi_analysis(C, {"n": {"analysis_type": "count"}}, timeframe=TIMEFRAME, group_by="country"),
      [{"country": "de", "n": 2}, {"country": "fr", "n": 1}, {"country": "us", "n": 1}])
print("python sdk queries ok")
