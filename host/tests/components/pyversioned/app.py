"""A Python component in two versions (`release.py` in v1/ or v2/), for the
hot-swap and instance-reuse tests."""

from release import VERSION
from wharf import App, Reply, kv

app = App("pyversioned")
# Calls this instance has served: 1 on every call of a fresh instance.
served = 0


@app.get("/pyversioned")
def version(req):
    return Reply.json(200, {"version": VERSION})


@app.get("/pyversioned/instance")
def instance(req):
    global served
    served += 1
    return Reply.json(200, {"served": served, "count": kv.increment("calls", 1).value})


@app.get("/pyversioned/boom")
def boom(req):
    global served
    served = 1000000
    raise SystemExit("a trap, not an exception the SDK catches")


Manifest, Http, EventsHandler = app.exports()
