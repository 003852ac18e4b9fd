"""Loyalty: points for customers' completed orders, written in Python.

It reads `order_completed` in its own consumer group (inventory, payment
and analytics still see every event) and takes the points back when the
order is refunded (`refund_order` from inventory, or the customer's refund
on `order_stream`). Streams are not ordered with respect to each other, so
a refund may come before its sale: each side records itself first, then
looks for the other, and `once` markers make every step count once however
often an event is delivered.

Serves `GET /loyalty/customers/{customer}`: the customer's points.
"""

import rules
from wharf import ApiError, App, Event, Reply, Request, Role, kv

app = App("loyalty")


@app.get(
    "/loyalty/customers/{customer}",
    summary="A customer's loyalty points",
    response_schema={
        "type": "object",
        "required": ["customer", "points"],
        "properties": {"customer": {"type": "string"}, "points": {"type": "integer", "minimum": 0}},
    },
    answers=[(200, "The points"), (401, "No credentials"), (403, "Another customer's points"), (404, "No such customer")],
)
def points(req: Request) -> Reply:
    customer = req.param("customer")
    req.require(Role.ADMIN, Role.CUSTOMER)
    if not rules.may_see(req.role.value, req.subject, customer):
        raise ApiError.forbidden("a customer sees only its own points")
    if not rules.valid_customer(customer):
        # A name no customer can have (the host never gives one): no one's points.
        raise ApiError.not_found(f"no customer named {customer!r}")
    raw = kv.get(rules.points_key(customer))
    return Reply.json(200, {"customer": customer, "points": int(raw or b"0")})


@app.subscribe("order_completed", "loyalty-group")
def on_completed(ev: Event) -> None:
    ev.require_origin("payment")
    order = ev.json()
    earned = rules.earning(order)
    if earned is None:
        return
    order_id = str(order["id"])
    # Record what it earned before looking for a refund: a refund handled
    # at the same moment then finds this record, or this finds its marker.
    kv.set_if_absent(rules.order_key(order_id), f"{earned['customer']} {earned['points']}".encode())
    key = rules.points_key(earned["customer"])
    kv.increment(key, earned["points"], once=rules.earned_marker(order_id))
    if kv.get(rules.refunded_key(order_id)) is not None:
        kv.increment(key, -earned["points"], once=rules.taken_back_marker(order_id))


def on_refund(ev: Event) -> None:
    ev.require_origin("inventory", "payment")
    msg = ev.json()
    if ev.stream == "order_stream" and msg.get("type") != "refund_requested":
        return
    order_id = str(msg.get("id", ""))
    if not order_id:
        return
    kv.set_if_absent(rules.refunded_key(order_id), b"1")
    record = kv.get(rules.order_key(order_id))
    if record is None:
        return  # no points earned yet: the sale, when it comes, takes them back
    customer, points = record.decode().rsplit(" ", 1)
    kv.increment(rules.points_key(customer), -int(points), once=rules.taken_back_marker(order_id))


app.subscribe("refund_order", "loyalty-group")(on_refund)
app.subscribe("order_stream", "loyalty-group")(on_refund)

Manifest, Http, EventsHandler = app.exports()
