"""Loyalty's rules: plain Python, tested by pytest outside wasm (test_rules.py)."""

from decimal import Decimal, InvalidOperation
from typing import Any, Optional


def points_for(total: Any) -> int:
    """One point per whole unit of an order's total (fee included): 12.99 earns 12.

    `total` is the JSON number payment sent, read as a `Decimal` so no float
    rounding gives or takes a point. A total that is not a number earns none.
    """
    try:
        amount = Decimal(str(total))
    except (InvalidOperation, ValueError):
        return 0
    if not amount.is_finite() or amount <= 0:
        return 0
    return int(amount)


def earning(order: Any) -> Optional[dict]:
    """What a completed order earns: {"customer", "points"}, or None when it
    earns nothing (no customer: placed anonymously, or no points; a customer
    name no key can hold)."""
    if not isinstance(order, dict):
        return None
    customer = order.get("customer")
    if not isinstance(customer, str) or not valid_customer(customer):
        return None
    points = points_for(order.get("total"))
    return {"customer": customer, "points": points} if points > 0 else None


def order_key(order_id: str) -> str:
    """What an order earned, kept so a refund can take it back."""
    return f"order:{order_id}"


def refunded_key(order_id: str) -> str:
    """Set when a refund is seen: the refund may come before the sale."""
    return f"refunded:{order_id}"


def points_key(customer: str) -> str:
    return f"points:{customer}"


def earned_marker(order_id: str) -> str:
    """`once` marker: an order earns once, however often it is delivered."""
    return f"earned:{order_id}"


def taken_back_marker(order_id: str) -> str:
    """`once` marker: a refund takes the points back once."""
    return f"taken-back:{order_id}"


def may_see(role: str, subject: Optional[str], customer: str) -> bool:
    """An admin sees anyone's points, a customer only its own."""
    return role == "admin" or (role == "customer" and subject == customer)


def valid_customer(customer: str) -> bool:
    """A subject as a key can hold it: 1-128 printable characters, no spaces
    and no braces (the host keeps braces for partitions)."""
    return 0 < len(customer) <= 128 and all(c.isprintable() and not c.isspace() and c not in "{}" for c in customer)
