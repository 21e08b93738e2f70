"""Subscription filters: event types, payload documents, headers, validation, limits."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookcast.domain import filters
from hookcast.domain.errors import ValidationError
from hookcast.domain.filters import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_REGEX_LENGTH,
    CompiledSubscriptionFilter,
    compile_filter,
    compile_subscription_filter,
    event_type_matches,
    normalize_headers,
    safe_matches,
    validate_filter_config,
)

PAYLOAD: dict[str, Any] = {
    "type": "invoice.paid",
    "amount": 250,
    "ratio": 0.5,
    "currency": "EUR",
    "paid": True,
    "bits": [True, False],
    "note": None,
    "tags": ["vip", "eu", 7],
    "person": {"name": "Ada", "age": 36, "address": {"city": "London"}},
    "items": [
        {"sku": "A-1", "qty": 2, "price": 10.5},
        {"sku": "B-2", "qty": 1, "price": 99},
    ],
    "matrix": [[1, 2], [3, 4]],
    "meta": {},
    "empty": [],
}


def matches(doc: dict[str, Any], payload: Any = PAYLOAD) -> bool:
    return compile_filter(doc)(payload)


# ------------------------------------------------------------------------ event types


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        ([], "anything", True),
        (["*"], "invoice.paid", True),
        (["invoice.paid"], "invoice.paid", True),
        (["invoice.paid"], "invoice.failed", False),
        (["user.created", "invoice.paid"], "invoice.paid", True),
        (["invoice.*"], "invoice.paid", True),
        (["invoice.*"], "invoice.paid.late", True),
        (["invoice.*"], "invoice", False),
        (["invoice.*"], "invoice.", False),
        (["invoice.*"], "invoices.paid", False),
        (["invoice.*"], "user.invoice.paid", False),
        (["*.paid"], "invoice.paid", False),  # only a trailing ".*" is a wildcard
        (["*.paid"], "*.paid", True),
        (["Invoice.Paid"], "invoice.paid", False),  # event types are case-sensitive
    ],
)
def test_event_type_patterns(patterns: list[str], event_type: str, expected: bool) -> None:
    assert event_type_matches(patterns, event_type) is expected
    compiled = compile_subscription_filter({"event_types": patterns})
    assert compiled.matches(event_type, {}, {}) is expected


@given(
    st.lists(st.sampled_from(["*", "a", "a.b", "a.*", "a.b.*", "b.*", "b"]), max_size=4),
    st.sampled_from(["a", "a.b", "a.b.c", "b", "b.x", "c", "a.", "a.b."]),
)
def test_compiled_event_matcher_agrees_with_event_type_matches(
    patterns: list[str], event_type: str
) -> None:
    compiled = compile_subscription_filter({"event_types": patterns})
    assert compiled.matches(event_type, None, {}) is event_type_matches(patterns, event_type)


# -------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        # implicit and explicit $eq
        ({"currency": "EUR"}, True),
        ({"currency": "USD"}, False),
        ({"amount": 250}, True),
        ({"amount": 250.0}, True),
        ({"amount": "250"}, False),
        ({"paid": True}, True),
        ({"paid": 1}, False),  # a bool is not a number
        ({"note": None}, True),
        ({"currency": {"$eq": "EUR"}}, True),
        ({"person": {"$eq": {"name": "Ada", "age": 36, "address": {"city": "London"}}}}, True),
        ({"person": {"$eq": {"name": "Ada"}}}, False),  # deep equality, not a subset
        ({"matrix": [[1, 2], [3, 4]]}, True),
        ({"matrix": [[1, 2]]}, False),
        ({"meta": {}}, True),
        ({"person": {}}, False),  # {} means "equals the empty object"
        ({"empty": []}, True),
        ({"bits": [True, False]}, True),
        ({"bits": [1, 0]}, False),  # no bool/number confusion inside containers either
        ({"bits": {"$in": [[1, 0]]}}, False),
        ({"person.address": {"$eq": {"city": "London"}}}, True),
        ({"person": {"$eq": {"name": "Ada", "age": 36.0, "address": {"city": "London"}}}}, True),
        ({"person": {"$eq": {"name": "Ada", "age": True, "address": {"city": "London"}}}}, False),
        # $neq
        ({"currency": {"$neq": "USD"}}, True),
        ({"currency": {"$neq": "EUR"}}, False),
        ({"paid": {"$neq": 1}}, True),
        # ordering: numbers
        ({"amount": {"$gt": 249}}, True),
        ({"amount": {"$gt": 250}}, False),
        ({"amount": {"$gte": 250}}, True),
        ({"amount": {"$lt": 250.5}}, True),
        ({"amount": {"$lt": 250}}, False),
        ({"amount": {"$lte": 250}}, True),
        ({"ratio": {"$gt": 0, "$lt": 1}}, True),
        ({"ratio": {"$gt": 0.5, "$lt": 1}}, False),
        # ordering: strings compare lexicographically
        ({"currency": {"$gt": "EUA"}}, True),
        ({"currency": {"$lt": "EUA"}}, False),
        ({"currency": {"$gte": "EUR", "$lte": "EUR"}}, True),
        # $in / $nin
        ({"currency": {"$in": ["USD", "EUR"]}}, True),
        ({"currency": {"$in": ["USD", "GBP"]}}, False),
        ({"amount": {"$in": [1, 250.0]}}, True),
        ({"paid": {"$in": [1]}}, False),
        ({"paid": {"$in": [True]}}, True),
        ({"note": {"$in": [None]}}, True),
        ({"person.address": {"$in": [{"city": "London"}]}}, True),
        ({"currency": {"$nin": ["USD", "GBP"]}}, True),
        ({"currency": {"$nin": ["USD", "EUR"]}}, False),
        ({"currency": {"$in": []}}, False),
        ({"currency": {"$nin": []}}, True),
        # $regex (unanchored search)
        ({"currency": {"$regex": "^E"}}, True),
        ({"currency": {"$regex": "U"}}, True),
        ({"currency": {"$regex": "^U"}}, False),
        ({"type": {"$regex": r"^invoice\.(paid|failed)$"}}, True),
        ({"amount": {"$regex": "250"}}, False),  # only strings match a regex
        # $exist
        ({"note": {"$exist": True}}, True),  # null is present
        ({"note": {"$exist": False}}, False),
        ({"nope": {"$exist": True}}, False),
        ({"nope": {"$exist": False}}, True),
        ({"person.nope": {"$exist": False}}, True),
        ({"person.name.nope": {"$exist": False}}, True),
    ],
)
def test_operators(doc: dict[str, Any], expected: bool) -> None:
    assert matches(doc) is expected


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        # missing key: false, except the negative operators
        ({"nope": "x"}, False),
        ({"nope": None}, False),
        ({"nope": {"$gt": 1}}, False),
        ({"nope": {"$lt": 1}}, False),
        ({"nope": {"$in": ["x"]}}, False),
        ({"nope": {"$regex": "."}}, False),
        ({"nope": {"$neq": "x"}}, True),
        ({"nope": {"$nin": ["x"]}}, True),
        ({"nope": {"$exist": False}}, True),
        ({"nope": {"$exist": False, "$neq": 1}}, True),
        ({"nope": {"$exist": False, "$gt": 1}}, False),
        ({"person.address.zip": "E1"}, False),
        ({"currency.length": 3}, False),  # no path through a scalar
        # type mismatches are false, never errors
        ({"currency": {"$gt": 1}}, False),
        ({"currency": {"$lt": 1}}, False),
        ({"amount": {"$lt": "zzz"}}, False),
        ({"amount": {"$gte": "0"}}, False),
        ({"paid": {"$gt": 0}}, False),
        ({"paid": {"$lte": 1}}, False),
        ({"note": {"$lt": 1}}, False),
        ({"person": {"$gt": 1}}, False),
        ({"person": {"$regex": "Ada"}}, False),
        ({"amount": {"$eq": [250]}}, False),
    ],
)
def test_absent_keys_and_type_mismatches(doc: dict[str, Any], expected: bool) -> None:
    assert matches(doc) is expected


@pytest.mark.parametrize("value", [{1, 2}, b"x", bytearray(b"x"), (1, 2), 1j, object()])
@pytest.mark.parametrize(
    "condition", [1, "x", {"$in": [1, "x"]}, {"$gt": 0}, {"$regex": "x"}, {"$eq": [1, 2]}]
)
def test_foreign_payload_types_do_not_match_or_raise(value: Any, condition: Any) -> None:
    assert matches({"a": condition}, {"a": value}) is False


@pytest.mark.parametrize("payload", [None, "text", 42, True, [1, 2], []])
def test_non_object_payloads_simply_do_not_match(payload: Any) -> None:
    assert matches({"a": 1}, payload) is False
    assert matches({"a": {"$exist": False}}, payload) is True


# ---------------------------------------------------------------------- paths, arrays


@pytest.mark.parametrize(
    ("nested", "dotted"),
    [
        ({"person": {"age": {"$gte": 5}}}, {"person.age": {"$gte": 5}}),
        ({"person": {"address": {"city": "London"}}}, {"person.address.city": "London"}),
        ({"person": {"address.city": "Paris"}}, {"person.address.city": "Paris"}),
        ({"items": {"$": {"sku": "B-2"}}}, {"items.$.sku": "B-2"}),
        ({"items": {"1": {"qty": 1}}}, {"items.1.qty": 1}),
        (
            {"person": {"name": "Ada", "age": {"$lt": 30}}},
            {"person.name": "Ada", "person.age": {"$lt": 30}},
        ),
    ],
)
def test_nested_and_dotted_forms_are_equivalent(
    nested: dict[str, Any], dotted: dict[str, Any]
) -> None:
    assert matches(nested) is matches(dotted)
    assert matches(nested, {"person": {"age": 20, "name": "Ada"}}) is matches(
        dotted, {"person": {"age": 20, "name": "Ada"}}
    )


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        # "$" is "any element"
        ({"items.$.sku": "B-2"}, True),
        ({"items.$.sku": "C-3"}, False),
        ({"items.$.price": {"$gt": 50}}, True),
        ({"items.$.price": {"$gt": 100}}, False),
        ({"items.$.qty": {"$neq": 3}}, True),  # no element has qty 3
        ({"items.$.qty": {"$neq": 2}}, False),  # some element has qty 2
        ({"items.$.qty": {"$nin": [5, 6]}}, True),
        ({"items.$.color": {"$exist": False}}, True),
        ({"items.$.sku": {"$exist": True}}, True),
        ({"items.$.sku": {"$exist": False}}, False),
        ({"items.$.sku": {"$regex": "^B"}}, True),
        ({"matrix.$.$": 4}, True),
        ({"matrix.$.$": 5}, False),
        ({"matrix.$": [3, 4]}, True),
        ({"tags.$": "eu"}, True),
        ({"person.$.name": "Ada"}, False),  # "$" only expands arrays
        ({"$.x": 1}, False),  # top-level payload is not an array
        # operators on one path hold independently over the elements (MongoDB semantics)
        ({"items.$.price": {"$gt": 50, "$lt": 11}}, True),
        # numeric segments index arrays
        ({"items.0.sku": "A-1"}, True),
        ({"items.1.sku": "A-1"}, False),
        ({"items.2.sku": {"$exist": False}}, True),
        ({"matrix.1.0": 3}, True),
        ({"items.01.sku": "B-2"}, False),  # not a canonical index
        # scalar conditions against an array field: "contains a matching element"
        ({"tags": "vip"}, True),
        ({"tags": 7}, True),
        ({"tags": "us"}, False),
        ({"tags": {"$in": ["us", "eu"]}}, True),
        ({"tags": {"$nin": ["us", "eu"]}}, False),
        ({"tags": {"$neq": "vip"}}, False),
        ({"tags": {"$gt": 6}}, True),
        ({"tags": {"$regex": "^v"}}, True),
        ({"tags": ["vip", "eu", 7]}, True),  # whole-array equality
        ({"tags": ["eu", "vip", 7]}, False),
        ({"matrix": [1, 2]}, True),  # an element equals the list
        ({"empty": {"$exist": True}}, True),
        ({"empty": "x"}, False),
    ],
)
def test_arrays(doc: dict[str, Any], expected: bool) -> None:
    assert matches(doc) is expected


def test_numeric_segment_is_an_object_key_on_objects() -> None:
    assert matches({"codes.0": "zero"}, {"codes": {"0": "zero"}}) is True
    assert matches({"0.sku": "x"}, [{"sku": "x"}]) is True


def test_wildcard_on_top_level_array_payload() -> None:
    assert matches({"$.sku": "y"}, [{"sku": "x"}, {"sku": "y"}]) is True
    assert matches({"$.sku": "z"}, [{"sku": "x"}, {"sku": "y"}]) is False


# ------------------------------------------------------------------------ $or / $and


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"$or": [{"currency": "USD"}, {"currency": "EUR"}]}, True),
        ({"$or": [{"currency": "USD"}, {"amount": {"$gt": 1000}}]}, False),
        ({"$and": [{"currency": "EUR"}, {"amount": {"$gt": 100}}]}, True),
        ({"$and": [{"currency": "EUR"}, {"amount": {"$gt": 1000}}]}, False),
        ({"$or": [{"nope": 1}, {"$and": [{"paid": True}, {"person.age": 36}]}]}, True),
        ({"$and": [{"$or": [{"a": 1}, {"b": 2}]}, {"currency": "EUR"}]}, False),
        ({"currency": "EUR", "$or": [{"amount": 1}, {"amount": 250}]}, True),
        ({"currency": "USD", "$or": [{"amount": 1}, {"amount": 250}]}, False),
        ({"$or": [{}]}, True),
        # inside a nested object, paths are relative to it
        ({"person": {"$or": [{"age": 1}, {"name": "Ada"}]}}, True),
        ({"person": {"$or": [{"age": 1}, {"name": "Bob"}]}}, False),
        ({"person": {"address": {"$and": [{"city": "London"}]}}}, True),
    ],
)
def test_or_and(doc: dict[str, Any], expected: bool) -> None:
    assert matches(doc) is expected


# --------------------------------------------------------------------------- headers


def _headers_filter(headers_doc: dict[str, Any]) -> CompiledSubscriptionFilter:
    return compile_subscription_filter({"filter": {"headers": headers_doc}})


@pytest.mark.parametrize(
    ("headers_doc", "headers", "expected"),
    [
        ({"X-Tenant": "acme"}, {"x-tenant": "acme"}, True),
        ({"x-tenant": "acme"}, {"X-TENANT": "acme"}, True),
        ({"X-Tenant": "acme"}, {"X-Tenant": "ACME"}, False),  # values are case-sensitive
        ({"X-Tenant": {"$in": ["a", "acme"]}}, {"X-Tenant": "acme"}, True),
        ({"X-Tenant": {"$regex": "^ac"}}, {"x-tenant": "acme"}, True),
        ({"X-Tenant": {"$exist": False}}, {"other": "1"}, True),
        ({"X-Tenant": "acme"}, {}, False),
        ({"x.dotted": "1"}, {"X.Dotted": "1"}, True),  # header names are not paths
        ({"$or": [{"X-A": "1"}, {"X-B": "2"}]}, {"x-b": "2"}, True),
        ({"$or": [{"X-A": "1"}, {"X-B": "2"}]}, {"x-b": "3"}, False),
        ({"X-Count": {"$gt": 1}}, {"x-count": "5"}, False),  # header values are strings
        ({"X-Count": {"$gt": "1"}}, {"x-count": "5"}, True),
    ],
)
def test_headers(headers_doc: dict[str, Any], headers: dict[str, str], expected: bool) -> None:
    compiled = _headers_filter(headers_doc)
    assert compiled.matches("any", {}, headers) is expected
    assert compiled.matches("any", {}, normalize_headers(headers)) is expected


def test_subscription_filter_combines_all_parts() -> None:
    compiled = compile_subscription_filter(
        {
            "event_types": ["invoice.*"],
            "filter": {
                "body": {"amount": {"$gte": 100}},
                "headers": {"X-Tenant": "acme"},
                "query": {"page": "1"},
                "path": {"id": "x"},
                "is_flattened": True,
            },
        }
    )
    headers = {"X-Tenant": "acme"}
    assert compiled.matches("invoice.paid", PAYLOAD, headers) is True
    assert compiled.matches("user.created", PAYLOAD, headers) is False
    assert compiled.matches("invoice.paid", {"amount": 5}, headers) is False
    assert compiled.matches("invoice.paid", PAYLOAD, {"X-Tenant": "other"}) is False


@pytest.mark.parametrize(
    "config",
    [
        None,
        {},
        {"event_types": None, "filter": None},
        {"event_types": [], "filter": {}},
        {"event_types": ["*"], "filter": {"body": {}, "headers": {}, "query": {}, "path": {}}},
        {"filter": {"body": None, "headers": None}},
    ],
)
def test_missing_or_empty_config_matches_everything(config: dict[str, Any] | None) -> None:
    compiled = compile_subscription_filter(config)
    assert compiled.body is None
    assert compiled.headers is None
    assert compiled.matches("anything", None, {}) is True


def test_query_and_path_are_validated_but_ignored() -> None:
    compiled = compile_subscription_filter({"filter": {"query": {"page": {"$gt": 100}}}})
    assert compiled.matches("e", {}, {}) is True
    with pytest.raises(ValidationError, match=re.escape("query.page.$bogus")):
        validate_filter_config({"filter": {"query": {"page": {"$bogus": 1}}}})


def test_compiled_filter_does_not_alias_the_document() -> None:
    operand = {"city": "London"}
    doc = {"person.address": {"$eq": operand}}
    predicate = compile_filter(doc)
    operand["city"] = "Paris"
    assert predicate(PAYLOAD) is True


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"a": {"$foo": 1}}, "at body.a.$foo: unknown operator $foo"),
        ({"$foo": 1}, "at body.$foo: unknown operator $foo"),
        ({"$eq": 1}, "at body: operator $eq must be applied to a field"),
        ({"a": {"$in": "x"}}, "at body.a.$in: $in needs a list"),
        ({"a": {"$nin": {"x": 1}}}, "at body.a.$nin: $nin needs a list"),
        ({"$or": []}, "at body.$or: $or needs a non-empty list of objects"),
        ({"$or": {"a": 1}}, "at body.$or: $or needs a non-empty list of objects"),
        ({"$and": "a"}, "at body.$and: $and needs a non-empty list of objects"),
        ({"$and": [{"a": 1}, 3]}, "at body.$and[1]: $and needs a non-empty list of objects"),
        ({"a": {"$regex": 5}}, "at body.a.$regex: $regex needs a string pattern"),
        ({"a": {"$regex": "("}}, "at body.a.$regex: invalid regex"),
        ({"a": {"$exist": "yes"}}, "at body.a.$exist: $exist needs true or false"),
        ({"a": {"$exist": 1}}, "at body.a.$exist: $exist needs true or false"),
        ({"a": {"$gt": True}}, "at body.a.$gt: $gt needs a number or a string"),
        ({"a": {"$lte": None}}, "at body.a.$lte: $lte needs a number or a string"),
        ({"a": {"$lt": [1]}}, "at body.a.$lt: $lt needs a number or a string"),
        ({"a": {"$gte": float("inf")}}, "at body.a.$gte: $gte needs a finite number"),
        ({"a..b": 1}, "at body.a..b: empty path segment"),
        ({"a.": 1}, "at body.a.: empty path segment"),
        ({"a.$gt": 1}, "at body.a.$gt: '$gt' is not allowed inside a field path"),
        ({"a": {1: "x"}}, "at body.a: key 1 is not a string"),
        ({"a": {"$eq": {1, 2}}}, "at body.a.$eq: set is not a JSON value"),
        ({"a": float("nan")}, "at body.a.$eq: numbers must be finite"),
        ({"p": {"q": {"$in": [1, {"$x": object()}]}}}, "at body.p.q.$in: object is not a JSON"),
    ],
)
def test_validation_errors(doc: dict[Any, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        compile_filter(doc)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ([], "at filter_config: must be an object"),
        ({"event_type": ["a"]}, "at filter_config: unknown key 'event_type'"),
        ({"event_types": "a.b"}, "at event_types: must be a list of strings"),
        ({"event_types": ["a", ""]}, "at event_types[1]: must be a non-empty string"),
        ({"event_types": ["a", 3]}, "at event_types[1]: must be a non-empty string"),
        ({"filter": []}, "at filter: must be an object"),
        ({"filter": {"bdy": {}}}, "at filter: unknown key 'bdy'"),
        ({"filter": {"body": []}}, "at body: must be an object"),
        ({"filter": {"is_flattened": "yes"}}, "at filter.is_flattened: must be a boolean"),
        ({"filter": {"headers": {"X-A": {"b": 1}}}}, "at headers.X-A: header filters are flat"),
        (
            {"filter": {"headers": {"X-A": {"$or": [{}]}}}},
            "at headers.X-A: header filters are flat",
        ),
        ({"filter": {"headers": {"$eq": "x"}}}, "at headers: operator $eq must be applied"),
        ({"filter": {"headers": {"X-A": {"$in": 1}}}}, "at headers.X-A.$in: $in needs a list"),
        ({"filter": {"path": {"$or": []}}}, "at path.$or: $or needs a non-empty list"),
    ],
)
def test_config_validation_errors(config: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        validate_filter_config(config)


def test_validation_error_message_starts_with_a_clear_prefix() -> None:
    with pytest.raises(ValidationError) as info:
        compile_filter({"amount": {"$between": [1, 2]}})
    assert info.value.message.startswith("invalid filter at body.amount.$between: unknown operator")
    assert "$gte" in info.value.message  # lists the operators that do exist


# ----------------------------------------------------------------------------- limits


def _conditions(n: int) -> dict[str, Any]:
    return {f"f{i}": i for i in range(n)}


def test_condition_limit() -> None:
    compile_filter(_conditions(MAX_CONDITIONS))
    with pytest.raises(ValidationError, match=re.escape(f"more than {MAX_CONDITIONS}")):
        compile_filter(_conditions(MAX_CONDITIONS + 1))


def test_condition_limit_counts_operators_and_combinators() -> None:
    half = MAX_CONDITIONS // 2
    compile_filter({f"f{i}": {"$gt": 0, "$lt": 9} for i in range(half)})
    with pytest.raises(ValidationError, match="too many conditions"):
        compile_filter({"$or": [{f"f{i}": {"$gt": 0, "$lt": 9}} for i in range(half)]})


def test_condition_limit_is_shared_across_a_subscription() -> None:
    half = MAX_CONDITIONS // 2
    config = {"filter": {"body": _conditions(half), "headers": _conditions(half)}}
    validate_filter_config(config)
    config["filter"]["query"] = {"one": "more"}
    with pytest.raises(ValidationError, match=re.escape("at query.one.$eq: too many conditions")):
        validate_filter_config(config)


def _dotted(depth: int) -> str:
    return ".".join(f"k{i}" for i in range(depth))


def _nested(depth: int, leaf: Any) -> Any:
    doc = leaf
    for i in reversed(range(depth)):
        doc = {f"k{i}": doc}
    return doc


def _nested_or(levels: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"a": 1}
    for _ in range(levels):
        doc = {"$or": [doc]}
    return doc


def test_depth_limit_for_paths() -> None:
    compile_filter({_dotted(MAX_DEPTH): 1})
    compile_filter(_nested(MAX_DEPTH, 1))
    with pytest.raises(ValidationError, match=f"nesting deeper than {MAX_DEPTH} levels"):
        compile_filter({_dotted(MAX_DEPTH + 1): 1})
    with pytest.raises(ValidationError, match=f"nesting deeper than {MAX_DEPTH} levels"):
        compile_filter(_nested(MAX_DEPTH + 1, 1))


def test_depth_limit_for_or_and() -> None:
    assert compile_filter(_nested_or(MAX_DEPTH - 1))({"a": 1}) is True
    with pytest.raises(ValidationError, match=f"nesting deeper than {MAX_DEPTH} levels"):
        compile_filter(_nested_or(MAX_DEPTH))


def test_depth_limit_for_operand_values() -> None:
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    compile_filter({"a": {"$eq": deep}})
    with pytest.raises(ValidationError, match=f"value nested deeper than {MAX_DEPTH}"):
        compile_filter({"a": {"$eq": [deep]}})


def test_pathologically_deep_documents_are_rejected_not_crashing() -> None:
    with pytest.raises(ValidationError, match="nesting deeper"):
        compile_filter(_nested(5000, 1))
    with pytest.raises(ValidationError, match="nesting deeper"):
        compile_filter(_nested_or(5000))


# ----------------------------------------------------------------------------- regexes


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(a)\1", "backreferences are not supported"),
        (r"(?P<x>a)(?P=x)", "backreferences are not supported"),
        (r"foo(?=bar)", "lookahead/lookbehind is not supported"),
        (r"foo(?!bar)", "lookahead/lookbehind is not supported"),
        (r"(?<=a)b", "lookahead/lookbehind is not supported"),
        (r"(?<!a)b", "lookahead/lookbehind is not supported"),
        (r"(?(1)a|b)", "invalid regex"),
        (r"(?>a+)b", "atomic groups are not supported"),
        (r"a++b", "possessive quantifiers are not supported"),
        (r"a{1001}", "repetition count above 1000"),
        ("a" * (MAX_REGEX_LENGTH + 1), f"regex longer than {MAX_REGEX_LENGTH} characters"),
    ],
)
@pytest.mark.parametrize("engine", ["default", "re"])
def test_unsupported_regexes_are_rejected_on_every_engine(
    pattern: str, message: str, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine == "re":
        monkeypatch.setattr(filters, "_RE2", None)
    with pytest.raises(ValidationError, match=re.escape(message)):
        compile_filter({"a": {"$regex": pattern}})


def test_longest_allowed_regex_compiles() -> None:
    assert matches({"a": {"$regex": "a" * MAX_REGEX_LENGTH}}, {"a": "a" * 600}) is True


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a*)*b", r"(\w+\s?)+$", r"(?:ab|cd)+$"])
def test_catastrophic_regexes_are_rejected_without_re2(
    pattern: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filters, "_RE2", None)
    assert filters.regex_engine() == "re"
    with pytest.raises(ValidationError, match="nested quantifiers are not allowed"):
        compile_filter({"a": {"$regex": pattern}})


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a*)*b", r"(?:ab|cd)+$"])
def test_catastrophic_regexes_run_in_linear_time_with_re2(pattern: str) -> None:
    pytest.importorskip("re2")
    assert filters.regex_engine() == "re2"
    predicate = compile_filter({"a": {"$regex": pattern}})
    started = time.perf_counter()
    assert predicate({"a": "a" * 50_000 + "!"}) is False
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("engine", ["default", "re"])
@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"^inv_\d+$", "inv_123", True),
        (r"^inv_\d+$", "inv_12a", False),
        (r"(?i)^EUR$", "eur", True),
        (r"\d", "٣", False),  # \d is ASCII-only, as in RE2
        (r"colou?r", "the colour red", True),
        (r"^(foo|bar)$", "bar", True),
        (r"a.c", "a\ud800c", True),  # a lone surrogate does not break matching
    ],
)
def test_regex_semantics_are_the_same_on_both_engines(
    pattern: str, text: str, expected: bool, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine == "re":
        monkeypatch.setattr(filters, "_RE2", None)
    assert matches({"a": {"$regex": pattern}}, {"a": text}) is expected


# ------------------------------------------------------------------------ safe_matches


def test_safe_matches_turns_errors_into_no_match() -> None:
    def explode(_: Any) -> bool:
        raise RuntimeError("boom")

    broken = CompiledSubscriptionFilter(event_types=(), body=explode, headers=None)
    with pytest.raises(RuntimeError):
        broken.matches("e", {}, {})
    assert safe_matches(broken, "e", {}, {}) is False
    fine = compile_subscription_filter({"filter": {"body": {"a": 1}}})
    assert safe_matches(fine, "e", {"a": 1}, {}) is True
    assert safe_matches(fine, "e", {"a": 2}, {}) is False


# ------------------------------------------------------------------- property tests

KEYS = st.text(alphabet="abcxy_", min_size=1, max_size=3)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=25,
)
OBJECTS = st.dictionaries(KEYS, JSON, min_size=1, max_size=5)


def _leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every scalar or empty-container leaf with its path (object keys, array indexes)."""
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(value, list) and value:
        for i, child in enumerate(value):
            yield from _leaves(child, (*path, str(i)))
    else:
        yield path, value


def _nest(path: tuple[str, ...], leaf: Any) -> dict[str, Any]:
    doc: Any = leaf
    for segment in reversed(path):
        doc = {segment: doc}
    return doc  # type: ignore[no-any-return]


@given(OBJECTS, st.data())
def test_property_a_filter_built_from_a_leaf_matches_its_object(
    obj: dict[str, Any], data: st.DataObject
) -> None:
    path, leaf = data.draw(st.sampled_from(list(_leaves(obj))))
    assert compile_filter({".".join(path): leaf})(obj) is True
    assert compile_filter(_nest(path, leaf))(obj) is True
    assert compile_filter({".".join(path): {"$exist": True}})(obj) is True
    assert compile_filter({".".join(path): {"$exist": False}})(obj) is False
    if isinstance(leaf, str):
        assert compile_filter({".".join(path): leaf + "\x00"})(obj) is False


def _reference_equal(a: Any, b: Any) -> bool:
    """JSON equality written independently of the module: bool and null are their own types."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return bool(a == b)


@given(SCALARS, st.lists(SCALARS, max_size=6))
def test_property_b_nin_is_the_negation_of_in(value: Any, listed: list[Any]) -> None:
    doc = {"f": value}
    found = compile_filter({"f": {"$in": listed}})(doc)
    assert compile_filter({"f": {"$nin": listed}})(doc) is (not found)
    assert found is any(_reference_equal(value, item) for item in listed)


CONDITIONS = st.one_of(
    SCALARS,
    st.builds(lambda n: {"$gt": n}, st.integers(-5, 5)),
    st.builds(lambda n: {"$lte": n}, st.integers(-5, 5)),
    st.builds(lambda b: {"$exist": b}, st.booleans()),
    st.builds(lambda xs: {"$in": xs}, st.lists(SCALARS, max_size=3)),
    st.builds(lambda x: {"$neq": x}, SCALARS),
)
NESTED_FILTERS = st.recursive(
    CONDITIONS,
    lambda children: st.dictionaries(KEYS, children, min_size=1, max_size=3),
    max_leaves=8,
).filter(lambda doc: isinstance(doc, dict) and not any(k.startswith("$") for k in doc))


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not any(k.startswith("$") for k in value):
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


@given(NESTED_FILTERS, JSON)
def test_property_c_nested_and_flattened_forms_agree(nested: dict[str, Any], payload: Any) -> None:
    flat = _flatten(nested)
    assert compile_filter(nested)(payload) is compile_filter(flat)(payload)


@given(NESTED_FILTERS)
def test_property_c_flattened_form_is_really_flat(nested: dict[str, Any]) -> None:
    for value in _flatten(nested).values():
        assert not (isinstance(value, dict) and value and not any(k.startswith("$") for k in value))


ROBUSTNESS_CONFIG = {
    "event_types": ["*"],
    "filter": {
        "body": {
            "$or": [
                {"a.$.b.0": {"$gt": 1, "$regex": "x"}},
                {"a.b": {"$in": [1, "x", None, [1], {"k": [2]}]}},
                {"$and": [{"c": {"$exist": False}}, {"d.$": {"$nin": [True, 0]}}]},
                {"e": {"$eq": {"x": [1, {"y": None}]}}, "f.0.1": {"$lte": "m"}},
            ]
        },
        "headers": {"X-Y": {"$regex": "^a"}, "$or": [{"z": "1"}, {"w": {"$neq": "2"}}]},
    },
}


@given(JSON, st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=4))
def test_property_d_safe_matches_never_raises(payload: Any, headers: dict[str, str]) -> None:
    compiled = compile_subscription_filter(ROBUSTNESS_CONFIG)
    result = compiled.matches("e", payload, headers)  # matching itself does not raise
    assert safe_matches(compiled, "e", payload, headers) is result
    assert isinstance(result, bool)
