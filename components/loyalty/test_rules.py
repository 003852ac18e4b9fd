"""Loyalty's rules, natively: `pytest components/loyalty`."""

import rules


def test_one_point_per_whole_unit_of_the_total():
    assert rules.points_for(12.99) == 12
    assert rules.points_for(5) == 5
    assert rules.points_for("0.99") == 0


def test_no_float_rounding_takes_a_point():
    # 0.1 + 0.2 in binary is 0.30000000000000004; 1.1 * 3 is 3.3000000000000003.
    assert rules.points_for(3.3) == 3
    assert rules.points_for("100.00") == 100


def test_nonsense_totals_earn_nothing():
    for bad in [None, "abc", -5, 0, float("nan"), float("inf"), {}, []]:
        assert rules.points_for(bad) == 0, bad


def test_an_anonymous_order_earns_nothing():
    assert rules.earning({"id": "O1", "total": 10}) is None
    assert rules.earning({"id": "O1", "total": 10, "customer": ""}) is None
    assert rules.earning("not an order") is None


def test_a_customers_order_earns_its_points():
    assert rules.earning({"id": "O1", "total": 10.5, "customer": "alice"}) == {"customer": "alice", "points": 10}
    assert rules.earning({"id": "O1", "total": 0.5, "customer": "alice"}) is None


def test_a_customer_sees_only_its_own_points():
    assert rules.may_see("admin", None, "alice")
    assert rules.may_see("customer", "alice", "alice")
    assert not rules.may_see("customer", "bob", "alice")
    assert not rules.may_see("anonymous", None, "alice")


def test_customer_names_are_bounded():
    assert rules.valid_customer("alice")
    assert not rules.valid_customer("")
    assert not rules.valid_customer("a b")
    assert not rules.valid_customer("x" * 129)
    assert not rules.valid_customer("a\nb")
    assert not rules.valid_customer("a{b}")
    assert rules.earning({"id": "O1", "total": 10, "customer": "{x}"}) is None


def test_each_order_has_its_own_markers():
    assert rules.earned_marker("O1") != rules.earned_marker("O2")
    assert rules.earned_marker("O1") != rules.taken_back_marker("O1")
