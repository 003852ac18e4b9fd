"""The SDK's routing and errors, natively: `pytest components/wharf-py`."""

import json

import pytest

from wharf import ApiError, App, CapabilityError, Event, EventError, Reply, Request, Role

app = App("demo")


@app.get("/things/{id}", summary="One thing", answers=[(200, "It")])
def get_thing(req):
    req.require(Role.ADMIN, Role.CUSTOMER)
    if req.param("id") == "missing":
        raise ApiError.not_found("no such thing")
    if req.param("id") == "redis-down":
        raise CapabilityError("unavailable", "redis is away")
    if req.param("id") == "bug":
        raise KeyError("oops")
    return Reply.json(200, {"id": req.param("id")})


@app.post("/things")
def post_thing(req):
    return Reply.json(201, req.json())


seen = []


@app.subscribe("s", "demo-group")
def on_s(ev):
    ev.require_origin("payment")
    if ev.json().get("again"):
        raise EventError.retry_later("not yet")
    seen.append(ev.json())


def request(method, path, route, params=None, role="admin", body=b"", content_type=None):
    headers = [("x-wharf-role", role)]
    if content_type:
        headers.append(("content-type", content_type))
    return Request(method, path, route, params or {}, headers, "", body)


def body(reply):
    return json.loads(reply.body)


def test_the_route_the_host_matched_picks_the_handler():
    reply = app.handle(request("GET", "/things/7", "/things/{id}", {"id": "7"}))
    assert (reply.status, body(reply)) == (200, {"id": "7"})


def test_errors_answer_in_the_hosts_json_shape():
    reply = app.handle(request("GET", "/things/missing", "/things/{id}", {"id": "missing"}))
    assert (reply.status, body(reply)) == (404, {"error": {"code": "not_found", "message": "no such thing"}})
    assert app.handle(request("GET", "/things/7", "/things/{id}", {"id": "7"}, role="anonymous")).status == 401


def test_a_capability_the_host_cannot_serve_is_a_503_with_retry_after():
    reply = app.handle(request("GET", "/x", "/things/{id}", {"id": "redis-down"}))
    assert reply.status == 503 and ("retry-after", "1") in reply.headers


def test_a_bug_is_a_500_that_shows_nothing_of_it():
    reply = app.handle(request("GET", "/x", "/things/{id}", {"id": "bug"}))
    assert reply.status == 500 and "oops" not in reply.body.decode()


def test_a_json_body_needs_its_media_type_and_must_parse():
    ok = app.handle(request("POST", "/things", "/things", body=b'{"a":1}', content_type="application/json"))
    assert (ok.status, body(ok)) == (201, {"a": 1})
    assert app.handle(request("POST", "/things", "/things", body=b'{"a":1}')).status == 415
    assert app.handle(request("POST", "/things", "/things", body=b"{", content_type="application/json")).status == 400


def test_events_reach_their_handler_and_say_retry_or_reject():
    assert app.handle_event(Event("s", "1-0", b'{"n":1}', group="demo-group", origin="payment")) is None
    assert seen == [{"n": 1}]
    again = app.handle_event(Event("s", "2-0", b'{"again":true}', group="demo-group", origin="payment"))
    assert again.retry and again.reason == "not yet"
    forged = app.handle_event(Event("s", "3-0", b"{}", group="demo-group", origin="mallory"))
    assert not forged.retry
    garbage = app.handle_event(Event("s", "4-0", b"not json", group="demo-group", origin="payment"))
    assert not garbage.retry
    unknown = app.handle_event(Event("other", "5-0", b"{}", group="demo-group", origin="payment"))
    assert not unknown.retry


@pytest.mark.parametrize("role", ["", "root", "ADMIN"])
def test_an_unknown_role_is_anonymous(role):
    assert Request("GET", "/", headers=[("x-wharf-role", role)]).role is Role.ANONYMOUS
