"""Subscription filters: which events a subscription wants, compiled once, matched cheaply.

A subscription's ``filter_config`` has Convoy's shape::

    {"event_types": ["invoice.paid", "user.*"],
     "filter": {"body": {...}, "headers": {...}, "query": {...}, "path": {...},
                "is_flattened": true}}

Filters are compiled once (:func:`compile_subscription_filter`) into plain closures, so that
a broadcast to many endpoints pays only for the comparisons themselves. Compilation validates
the whole document and raises :class:`~hookcast.domain.errors.ValidationError` naming the
offending place, e.g. ``body.amount.$gt``; matching never raises for any JSON payload.

Event types
    An empty list or ``*`` matches every type; otherwise the type must be listed exactly.
    *hookcast extension:* a pattern ending in ``.*`` (``invoice.*``) matches every type
    that starts with ``invoice.`` and has something after it (``invoice.paid``,
    ``invoice.paid.late``, but not ``invoice``). A ``*`` anywhere else is an ordinary
    character.

Body documents (MongoDB-like, as in Convoy)
    * Nested objects are nested paths and dotted keys are paths too:
      ``{"person": {"age": {"$gte": 5}}}`` is ``{"person.age": {"$gte": 5}}``.
    * Operators: ``$eq`` (implied by a plain value), ``$neq``, ``$gt``, ``$gte``, ``$lt``,
      ``$lte``, ``$in``, ``$nin``, ``$regex``, ``$exist``, and the combinators ``$or`` and
      ``$and`` (lists of sub-documents). Several operators on one path must all hold.
    * Arrays: a ``$`` path segment means "any element" (``items.$.sku``); a numeric segment
      indexes an array (``items.0.sku``) or names an object key ``"0"``; a condition on a
      field holding an array holds if the whole array or any element satisfies it.
    * ``$eq`` on objects and arrays is deep equality; numbers compare by value
      (``1 == 1.0``) but a boolean is never a number (``true != 1``).
    * A plain empty object ``{"a": {}}`` means "``a`` equals ``{}``".

Headers
    A flat mapping of header name to condition; names compare case-insensitively and are
    never split on dots. ``$or``/``$and`` work as in bodies.

Query and path
    Accepted and validated like body documents so that Convoy clients can save them, but
    ignored when matching: events published through the API have neither.

Deliberate differences from Convoy
    1. A condition on a field that is absent from the payload is false (Convoy skips it and
       so lets the event through), except ``$exist: false``, ``$neq`` and ``$nin``, which
       hold for an absent field (MongoDB semantics: an absent value differs from anything).
    2. ``$exist: false`` on a missing key is true (Convoy gets this wrong).
    3. A type mismatch makes the condition false and is never an error; in particular
       ``$lt``/``$lte`` on a non-number is false (Convoy negates ``$gte``/``$gt`` and so
       says true).
    4. ``$gt``/``$gte``/``$lt``/``$lte`` also compare two strings, lexicographically.
    5. ``$or``/``$and`` may appear inside a nested object; their sub-documents' paths are
       relative to it. ``$`` wildcards are not limited to three per path.
    6. Every operator, not only implicit equality, applies "any element" to array fields.
    7. A list given as a plain value means deep equality with the field (or with one of its
       elements); Convoy turns lists of objects into indexed paths.
    8. Regular expressions are validated when the subscription is saved, use RE2 syntax
       without backreferences, lookarounds, atomic groups or possessive quantifiers, and
       ``\\d``, ``\\w``, ``\\s``, ``\\b`` are ASCII-only. They run on RE2 (linear time) when
       ``google-re2`` is installed; otherwise on :mod:`re` with a stricter check that also
       rejects nested quantifiers and alternations inside repeats (best effort only).
    9. Limits: at most :data:`MAX_CONDITIONS` operators per subscription, paths plus
       ``$or``/``$and`` nesting at most :data:`MAX_DEPTH` deep, regexes at most
       :data:`MAX_REGEX_LENGTH` characters.
"""

from __future__ import annotations

import importlib
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final, NoReturn

from hookcast.domain.errors import ValidationError

__all__ = [
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "MAX_REGEX_LENGTH",
    "CompiledSubscriptionFilter",
    "Predicate",
    "compile_filter",
    "compile_subscription_filter",
    "event_type_matches",
    "normalize_headers",
    "regex_engine",
    "safe_matches",
    "validate_filter_config",
]

MAX_CONDITIONS: Final = 200
MAX_DEPTH: Final = 16
MAX_REGEX_LENGTH: Final = 512
_MAX_REGEX_REPEAT: Final = 1000  # RE2's own ceiling for counted repetition

Predicate = Callable[[Any], bool]
"""A compiled filter: takes a parsed JSON document, says whether it matches."""

_Check = tuple[Predicate, bool]  # (test on one present value, negate over all candidates?)

_MISSING: Final[Any] = object()
_WILDCARD: Final = "$"
_LOGICAL: Final = frozenset({"$or", "$and"})
_FILTER_KEYS: Final = frozenset(
    {"body", "headers", "query", "path", "is_flattened", "raw_body", "raw_headers"}
)
_CONFIG_KEYS: Final = frozenset({"event_types", "filter"})


def _load_re2() -> ModuleType | None:
    """The ``re2`` module from google-re2 if it is installed."""
    try:
        return importlib.import_module("re2")
    except ImportError:
        return None


_RE2: ModuleType | None = _load_re2()
_RE_PARSER: Final = importlib.import_module("re._parser")


def regex_engine() -> str:
    """``"re2"`` when regexes run on RE2 (linear time), else ``"re"``."""
    return "re2" if _RE2 is not None else "re"


# --------------------------------------------------------------------------- event types


def event_type_matches(patterns: Sequence[str], event_type: str) -> bool:
    """Whether ``event_type`` is selected by ``patterns`` (see the module docs)."""
    if not patterns:
        return True
    for pattern in patterns:
        if pattern in ("*", event_type):
            return True
        if _is_prefix_pattern(pattern) and _has_prefix(event_type, pattern[:-1]):
            return True
    return False


def _is_prefix_pattern(pattern: str) -> bool:
    """Whether a pattern is a trailing-wildcard pattern like ``invoice.*``."""
    return len(pattern) > 2 and pattern.endswith(".*")


def _has_prefix(event_type: str, prefix: str) -> bool:
    """Whether ``event_type`` starts with ``prefix`` and has more after it."""
    return len(event_type) > len(prefix) and event_type.startswith(prefix)


def _event_type_matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """A fast equivalent of :func:`event_type_matches` for fixed patterns."""
    if not patterns or "*" in patterns:
        return _always
    exact = frozenset(patterns)
    prefixes = tuple(p[:-1] for p in patterns if _is_prefix_pattern(p))
    if not prefixes:
        return exact.__contains__

    bare = frozenset(prefixes)  # "invoice." itself is not matched by "invoice.*"

    def match(event_type: str) -> bool:
        if event_type in exact:
            return True
        if not event_type.startswith(prefixes):
            return False
        return event_type not in bare or any(_has_prefix(event_type, p) for p in prefixes)

    return match


def _always(_: Any) -> bool:
    """The predicate of an empty filter."""
    return True


# ----------------------------------------------------------------------- compiled filter


class _LowerHeaders(dict[str, Any]):
    """Headers whose names are already lower-case (see :func:`normalize_headers`)."""


def normalize_headers(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    """Lower-case header names once, so a broadcast can reuse them for every subscription."""
    if isinstance(headers, _LowerHeaders):
        return headers
    return _LowerHeaders((str(k).lower(), v) for k, v in headers.items())


@dataclass(frozen=True, slots=True)
class CompiledSubscriptionFilter:
    """A subscription's filter, ready to match events; ``None`` parts match everything."""

    event_types: tuple[str, ...]
    body: Predicate | None
    headers: Predicate | None
    _event_match: Callable[[str], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_event_match", _event_type_matcher(self.event_types))

    def matches(self, event_type: str, body: Any, headers: Mapping[str, str]) -> bool:
        """Whether an event with this type, parsed body and headers passes the filter."""
        if not self._event_match(event_type):
            return False
        if self.body is not None and not self.body(body):
            return False
        return self.headers is None or self.headers(normalize_headers(headers))


def safe_matches(
    compiled: CompiledSubscriptionFilter,
    event_type: str,
    body: Any,
    headers: Mapping[str, str],
) -> bool:
    """Like :meth:`CompiledSubscriptionFilter.matches` but never raises: errors mean no."""
    try:
        return compiled.matches(event_type, body, headers)
    except Exception:
        return False


_MATCH_ALL: Final = CompiledSubscriptionFilter(event_types=(), body=None, headers=None)


# ------------------------------------------------------------------------- entry points


@dataclass(slots=True)
class _Budget:
    """Counts operators across one subscription's documents to enforce the limit."""

    conditions: int = 0

    def spend(self, where: str) -> None:
        """Count one operator; fail once the subscription has too many."""
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            _fail(where, f"too many conditions (more than {MAX_CONDITIONS})")


def compile_filter(doc: Mapping[str, Any]) -> Predicate:
    """Compile a body-style filter document into a predicate over a parsed JSON payload."""
    return _compile_root(doc, _Budget(), "body", headers=False)


def compile_subscription_filter(
    filter_config: Mapping[str, Any] | None,
) -> CompiledSubscriptionFilter:
    """Validate and compile a Convoy ``filter_config``; missing or empty parts match all."""
    if filter_config is None:
        return _MATCH_ALL
    _require_mapping(filter_config, "filter_config")
    _reject_unknown_keys(filter_config, _CONFIG_KEYS, "filter_config")
    event_types = _parse_event_types(filter_config.get("event_types"))
    docs = filter_config.get("filter")
    docs = {} if docs is None else docs
    _require_mapping(docs, "filter")
    _reject_unknown_keys(docs, _FILTER_KEYS, "filter")
    _check_flattened_flag(docs.get("is_flattened"))
    budget = _Budget()
    body = _compile_optional(docs.get("body"), budget, "body", headers=False)
    headers = _compile_optional(docs.get("headers"), budget, "headers", headers=True)
    for ignored in ("query", "path"):
        _compile_optional(docs.get(ignored), budget, ignored, headers=False)
    return CompiledSubscriptionFilter(event_types=event_types, body=body, headers=headers)


def validate_filter_config(filter_config: Mapping[str, Any] | None) -> None:
    """Raise :class:`ValidationError` if ``filter_config`` cannot be compiled."""
    compile_subscription_filter(filter_config)


def _compile_optional(doc: Any, budget: _Budget, where: str, *, headers: bool) -> Predicate | None:
    """Compile one part of ``filter``; ``None`` when it is absent or empty."""
    if doc is None:
        return None
    predicate = _compile_root(doc, budget, where, headers=headers)
    return None if predicate is _always else predicate


def _compile_root(doc: Any, budget: _Budget, where: str, *, headers: bool) -> Predicate:
    """Compile a top-level document of one kind (body-like or headers)."""
    _require_mapping(doc, where)
    return _Compiler(budget, headers).document(doc, (), 0, where)


def _parse_event_types(value: Any) -> tuple[str, ...]:
    """Validate ``event_types``: absent, or a list of non-empty strings."""
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        _fail("event_types", "must be a list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            _fail(f"event_types[{i}]", "must be a non-empty string")
    return tuple(value)


def _check_flattened_flag(value: Any) -> None:
    """``is_flattened`` is informational (both forms are accepted) but must be a bool."""
    if value is not None and not isinstance(value, bool):
        _fail("filter.is_flattened", "must be a boolean")


def _reject_unknown_keys(doc: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    """Fail on keys that are not part of Convoy's schema (most likely typos)."""
    unknown = sorted(str(k) for k in doc if k not in known)
    if unknown:
        _fail(where, f"unknown key {unknown[0]!r} (expected one of {sorted(known)})")


def _require_mapping(value: Any, where: str) -> None:
    """Fail unless ``value`` is a JSON object."""
    if not isinstance(value, Mapping):
        _fail(where, "must be an object")


def _fail(where: str, problem: str) -> NoReturn:
    """Raise the validation error for ``problem`` at ``where``."""
    raise ValidationError(f"invalid filter at {where}: {problem}")


# ---------------------------------------------------------------------------- compiler


@dataclass(slots=True)
class _Compiler:
    """Turns one filter document into a predicate, enforcing the limits on the way."""

    budget: _Budget
    headers: bool

    def document(
        self, doc: Mapping[str, Any], prefix: tuple[str, ...], logic: int, where: str
    ) -> Predicate:
        """Compile an object whose keys are paths, operators applying at ``prefix``, or
        ``$or``/``$and``; all of them must hold."""
        parts: list[Predicate] = []
        operators: dict[str, Any] = {}
        for key, value in doc.items():
            if not isinstance(key, str):
                _fail(where, f"key {key!r} is not a string")
            here = f"{where}.{key}"
            if key in _LOGICAL:
                parts.append(self.logical(key, value, prefix, logic, here))
            elif _is_operator(key):
                operators[key] = value
            else:
                path = prefix + self.split(key, here)
                _check_depth(path, logic, here)
                parts.append(self.value(value, path, logic, here))
        if operators:
            parts.append(self.operators(operators, prefix, where))
        return _all_of(parts)

    def split(self, key: str, where: str) -> tuple[str, ...]:
        """The path segments of a key: headers are single names, body keys split on dots."""
        if self.headers:
            return (key.lower(),)
        segments = tuple(key.split("."))
        for segment in segments:
            if not segment:
                _fail(where, "empty path segment")
            if segment.startswith("$") and segment != _WILDCARD:
                _fail(where, f"{segment!r} is not allowed inside a field path")
        return segments

    def value(self, value: Any, path: tuple[str, ...], logic: int, where: str) -> Predicate:
        """Compile what a path key maps to: a sub-document, operators, or a plain value."""
        if isinstance(value, Mapping) and value:
            if self.headers and not all(_is_field_operator(k) for k in value):
                _fail(where, "header filters are flat: use a value or field operators like $eq")
            return self.document(value, path, logic, where)
        return self.operators({"$eq": value}, path, where)

    def logical(
        self, op: str, value: Any, prefix: tuple[str, ...], logic: int, where: str
    ) -> Predicate:
        """Compile ``$or``/``$and``: a non-empty list of sub-documents."""
        self.budget.spend(where)
        _check_depth(prefix, logic + 1, where)
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence) or not value:
            _fail(where, f"{op} needs a non-empty list of objects")
        parts: list[Predicate] = []
        for i, sub in enumerate(value):
            if not isinstance(sub, Mapping):
                _fail(f"{where}[{i}]", f"{op} needs a non-empty list of objects")
            parts.append(self.document(sub, prefix, logic + 1, f"{where}[{i}]"))
        return _any_of(parts) if op == "$or" else _all_of(parts)

    def operators(self, ops: Mapping[str, Any], path: tuple[str, ...], where: str) -> Predicate:
        """Compile the field operators that apply to one path."""
        for op in ops:
            if op not in _OPERATORS:
                known = ", ".join(_KNOWN_OPERATORS)
                _fail(f"{where}.{op}", f"unknown operator {op} (known: {known})")
        if not path:
            _fail(where, f"operator {next(iter(ops))} must be applied to a field")
        checks: list[_Check] = []
        for op, operand in ops.items():
            here = f"{where}.{op}"
            self.budget.spend(here)
            checks.append(_OPERATORS[op](operand, here))
        return _path_condition(path, tuple(checks))


def _is_operator(key: str) -> bool:
    """Whether a key names an operator rather than a path (``$`` and ``$.x`` are paths)."""
    return key.startswith("$") and key != _WILDCARD and not key.startswith("$.")


def _is_field_operator(key: Any) -> bool:
    """Whether a key is an operator that applies to a field (not ``$or``/``$and``)."""
    return isinstance(key, str) and _is_operator(key) and key not in _LOGICAL


def _check_depth(path: tuple[str, ...], logic: int, where: str) -> None:
    """Fail when path segments plus ``$or``/``$and`` levels exceed :data:`MAX_DEPTH`."""
    if len(path) + logic > MAX_DEPTH:
        _fail(where, f"nesting deeper than {MAX_DEPTH} levels")


def _all_of(parts: Sequence[Predicate]) -> Predicate:
    """A predicate that holds when every part holds (an empty list always holds)."""
    if not parts:
        return _always
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda doc: first(doc) and second(doc)
    frozen = tuple(parts)

    def every(doc: Any) -> bool:
        for part in frozen:  # noqa: SIM110 - a plain loop is cheaper than all(<genexpr>)
            if not part(doc):
                return False
        return True

    return every


def _any_of(parts: Sequence[Predicate]) -> Predicate:
    """A predicate that holds when at least one part holds."""
    if len(parts) == 1:
        return parts[0]
    frozen = tuple(parts)

    def some(doc: Any) -> bool:
        for part in frozen:  # noqa: SIM110 - a plain loop is cheaper than any(<genexpr>)
            if part(doc):
                return True
        return False

    return some


# ---------------------------------------------------------------------------- paths


def _path_condition(path: tuple[str, ...], checks: tuple[_Check, ...]) -> Predicate:
    """Combine a path with its operator checks into one predicate."""
    if _WILDCARD in path:
        return _multi_condition(_values_resolver(path), checks)
    return _single_condition(_value_resolver(path), checks)


def _single_condition(resolve: Callable[[Any], Any], checks: tuple[_Check, ...]) -> Predicate:
    """Checks against the single value (or absence) a wildcard-free path leads to."""
    if len(checks) == 1:
        test, negate = checks[0]
        if negate:
            return lambda doc: (value := resolve(doc)) is _MISSING or not test(value)
        return lambda doc: (value := resolve(doc)) is not _MISSING and test(value)
    on_missing = all(negate for _, negate in checks)

    def condition(doc: Any) -> bool:
        value = resolve(doc)
        if value is _MISSING:
            return on_missing
        for test, negate in checks:  # noqa: SIM110 - cheaper than all(<genexpr>)
            if test(value) == negate:
                return False
        return True

    return condition


def _multi_condition(resolve: Callable[[Any], list[Any]], checks: tuple[_Check, ...]) -> Predicate:
    """Checks against every value a wildcard path leads to: a positive check needs one
    value to pass, a negated one needs none to."""

    def condition(doc: Any) -> bool:
        values = resolve(doc)
        return all(any(map(test, values)) != negate for test, negate in checks)

    return condition


def _segment_index(segment: str) -> int | None:
    """The array index a canonical decimal segment denotes, else ``None``."""
    if segment.isascii() and segment.isdigit() and str(int(segment)) == segment:
        return int(segment)
    return None


def _value_resolver(path: tuple[str, ...]) -> Callable[[Any], Any]:
    """A function returning the value at ``path`` or ``_MISSING``."""
    steps = tuple((segment, _segment_index(segment)) for segment in path)
    if all(index is None for _, index in steps):
        return _key_resolver(path)

    def resolve(doc: Any) -> Any:
        for key, index in steps:
            doc = _step(doc, key, index)
            if doc is _MISSING:
                break
        return doc

    return resolve


def _key_resolver(keys: tuple[str, ...]) -> Callable[[Any], Any]:
    """The fast path for paths made only of object keys."""
    if len(keys) == 1:
        (key,) = keys
        return lambda doc: doc.get(key, _MISSING) if isinstance(doc, dict) else _MISSING

    def resolve(doc: Any) -> Any:
        for key in keys:
            if not isinstance(doc, dict):
                return _MISSING
            doc = doc.get(key, _MISSING)
        return doc

    return resolve


def _step(node: Any, key: str, index: int | None) -> Any:
    """One path step: an object key, or an array index for numeric segments."""
    if isinstance(node, dict):
        return node.get(key, _MISSING)
    if index is not None and isinstance(node, list) and index < len(node):
        return node[index]
    return _MISSING


def _values_resolver(path: tuple[str, ...]) -> Callable[[Any], list[Any]]:
    """A function returning every value a path with ``$`` wildcards reaches."""
    steps = tuple((segment, _segment_index(segment)) for segment in path)

    def resolve(doc: Any) -> list[Any]:
        current = [doc]
        for key, index in steps:
            current = list(_fan_out(current, key, index))
            if not current:
                break
        return current

    return resolve


def _fan_out(nodes: Iterable[Any], key: str, index: int | None) -> Iterable[Any]:
    """Apply one path step to many nodes; ``$`` expands arrays into their elements."""
    for node in nodes:
        if key == _WILDCARD:
            if isinstance(node, list):
                yield from node
            continue
        value = _step(node, key, index)
        if value is not _MISSING:
            yield value


# ------------------------------------------------------------------------- operators


def _with_elements(test: Predicate) -> Predicate:
    """Extend a test on one value so an array also passes when one of its elements does."""
    return lambda value: test(value) or (isinstance(value, list) and any(map(test, value)))


def _build_eq(operand: Any, where: str) -> _Check:
    """``$eq``: deep equality with the field or one of its elements."""
    return _member_test([_json_operand(operand, where, 0)]), False


def _build_neq(operand: Any, where: str) -> _Check:
    """``$neq``: the negation of ``$eq`` (so true when the field is absent)."""
    return _build_eq(operand, where)[0], True


def _build_in(operand: Any, where: str) -> _Check:
    """``$in``: the field (or one of its elements) equals one of the listed values."""
    return _listed_test(operand, where, "$in"), False


def _build_nin(operand: Any, where: str) -> _Check:
    """``$nin``: the negation of ``$in`` (so true when the field is absent)."""
    return _listed_test(operand, where, "$nin"), True


def _listed_test(operand: Any, where: str, op: str) -> Predicate:
    """The membership test shared by ``$in`` and ``$nin``."""
    if not isinstance(operand, list | tuple):
        _fail(where, f"{op} needs a list")
    return _member_test([_json_operand(item, where, 1) for item in operand])


def _build_exist(operand: Any, where: str) -> _Check:
    """``$exist``: presence (``true``) or absence (``false``) of the field."""
    if not isinstance(operand, bool):
        _fail(where, "$exist needs true or false")
    return _always, not operand


def _build_regex(operand: Any, where: str) -> _Check:
    """``$regex``: a string field (or element) contains a match of the pattern."""
    if not isinstance(operand, str):
        _fail(where, "$regex needs a string pattern")
    search = _regex_searcher(operand, where)
    return _with_elements(lambda value: isinstance(value, str) and search(value)), False


_ORDERINGS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


def _build_order(op: str) -> Callable[[Any, str], _Check]:
    """A builder for one of ``$gt``, ``$gte``, ``$lt``, ``$lte``."""
    compare = _ORDERINGS[op]

    def build(operand: Any, where: str) -> _Check:
        if _is_number(operand):
            if not math.isfinite(operand):
                _fail(where, f"{op} needs a finite number")
            return _with_elements(lambda v: _is_number(v) and compare(v, operand)), False
        if isinstance(operand, str):
            return _with_elements(lambda v: isinstance(v, str) and compare(v, operand)), False
        _fail(where, f"{op} needs a number or a string")

    return build


_OPERATORS: Final[dict[str, Callable[[Any, str], _Check]]] = {
    "$eq": _build_eq,
    "$neq": _build_neq,
    "$in": _build_in,
    "$nin": _build_nin,
    "$exist": _build_exist,
    "$regex": _build_regex,
    **{op: _build_order(op) for op in _ORDERINGS},
}
_KNOWN_OPERATORS: Final = tuple(sorted((*_OPERATORS, *_LOGICAL)))


def _is_number(value: Any) -> bool:
    """Whether a value is a JSON number (booleans are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _member_test(candidates: Sequence[Any]) -> Predicate:
    """A test: does a value (or one of its elements) deep-equal one of ``candidates``?"""
    if all(isinstance(c, str) for c in candidates):
        return _string_member_test(frozenset(candidates))
    scalars = frozenset(c for c in candidates if isinstance(c, str) or _is_number(c))
    flags = frozenset(c for c in candidates if c is None or isinstance(c, bool))
    containers = tuple(c for c in candidates if isinstance(c, list | dict))

    def one(value: Any) -> bool:
        if value is None or isinstance(value, bool):
            return value in flags
        if isinstance(value, list | dict):
            return any(_json_equal(value, c) for c in containers)
        return (isinstance(value, str) or _is_number(value)) and value in scalars

    return _with_elements(one)


def _string_member_test(strings: frozenset[str]) -> Predicate:
    """The common case of :func:`_member_test`: only string candidates."""

    def test(value: Any) -> bool:
        if isinstance(value, str):
            return value in strings
        if isinstance(value, list):
            return any(isinstance(e, str) and e in strings for e in value)
        return False

    return test


def _json_equal(value: Any, expected: Any) -> bool:
    """Deep JSON equality; recursion is bounded by the depth of ``expected``."""
    if expected is None or isinstance(expected, bool):
        return value is expected
    if isinstance(expected, str):
        return isinstance(value, str) and value == expected
    if isinstance(expected, list):
        return (
            isinstance(value, list)
            and len(value) == len(expected)
            and all(map(_json_equal, value, expected))
        )
    if isinstance(expected, dict):
        return (
            isinstance(value, dict)
            and value.keys() == expected.keys()
            and all(_json_equal(value[k], v) for k, v in expected.items())
        )
    return _is_number(value) and value == expected


def _json_operand(value: Any, where: str, depth: int) -> Any:
    """Validate an operand as JSON (bounded depth) and copy it into plain dicts/lists."""
    if depth > MAX_DEPTH:
        _fail(where, f"value nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | str):
        return value
    if _is_number(value):
        if not math.isfinite(value):
            _fail(where, "numbers must be finite")
        return value
    if isinstance(value, list | tuple):
        return [_json_operand(item, where, depth + 1) for item in value]
    if isinstance(value, Mapping):
        return {_json_key(k, where): _json_operand(v, where, depth + 1) for k, v in value.items()}
    _fail(where, f"{type(value).__name__} is not a JSON value")


def _json_key(key: Any, where: str) -> str:
    """Object keys in operands must be strings."""
    if not isinstance(key, str):
        _fail(where, f"key {key!r} is not a string")
    return str(key)


# ---------------------------------------------------------------------------- regexes

_ALWAYS_FORBIDDEN: Final = {
    "GROUPREF": "backreferences are not supported",
    "GROUPREF_EXISTS": "conditional groups are not supported",
    "ASSERT": "lookahead/lookbehind is not supported",
    "ASSERT_NOT": "lookahead/lookbehind is not supported",
    "ATOMIC_GROUP": "atomic groups are not supported",
    "POSSESSIVE_REPEAT": "possessive quantifiers are not supported",
}
_REPEATS: Final = frozenset({"MAX_REPEAT", "MIN_REPEAT"})


def _regex_searcher(pattern: str, where: str) -> Callable[[str], bool]:
    """Validate a ``$regex`` pattern and return an unanchored search function."""
    if len(pattern) > MAX_REGEX_LENGTH:
        _fail(where, f"regex longer than {MAX_REGEX_LENGTH} characters")
    try:
        tree = _RE_PARSER.parse(pattern, re.ASCII)
    except (re.error, RecursionError, OverflowError) as exc:
        _fail(where, f"invalid regex: {exc}")
    _check_regex_tree(tree, where, inside_repeat=False, strict=_RE2 is None)
    if _RE2 is not None:
        return _re2_searcher(_RE2, pattern, where)
    try:
        search = re.compile(pattern, re.ASCII).search
    except re.error as exc:
        _fail(where, f"invalid regex: {exc}")
    return lambda text: search(text) is not None


def _check_regex_tree(
    tree: Iterable[Any], where: str, *, inside_repeat: bool, strict: bool
) -> None:
    """Reject constructs RE2 lacks (always) and, for ``re``, ones that can backtrack badly."""
    for op, arg in tree:
        name = str(op)
        if name in _ALWAYS_FORBIDDEN:
            _fail(where, f"invalid regex: {_ALWAYS_FORBIDDEN[name]}")
        for sub, repeated in _regex_children(name, arg, where):
            if strict and inside_repeat and (repeated or name == "BRANCH"):
                _fail(where, "invalid regex: nested quantifiers are not allowed")
            _check_regex_tree(sub, where, inside_repeat=inside_repeat or repeated, strict=strict)


def _regex_children(name: str, arg: Any, where: str) -> list[tuple[Any, bool]]:
    """The sub-patterns of one parsed regex node, each flagged if it repeats more than once."""
    if name in _REPEATS:
        _, high, sub = arg
        unbounded = high == _RE_PARSER.MAXREPEAT
        if not unbounded and high > _MAX_REGEX_REPEAT:
            _fail(where, f"invalid regex: repetition count above {_MAX_REGEX_REPEAT}")
        return [(sub, unbounded or high > 1)]
    if name == "SUBPATTERN":
        return [(arg[-1], False)]
    if name == "BRANCH":
        return [(branch, False) for branch in arg[1]]
    return []


def _re2_searcher(module: ModuleType, pattern: str, where: str) -> Callable[[str], bool]:
    """An RE2 search function; RE2 needs UTF-8 bytes, lone surrogates included."""
    options = module.Options()
    options.log_errors = False
    options.never_capture = True
    matcher = module.Set.SearchSet(options)
    try:
        matcher.Add(pattern)
        matcher.Compile()
    except module.error:
        _fail(where, "invalid regex: not accepted by RE2")
    match = matcher.Match
    return lambda text: match(text.encode("utf-8", "surrogatepass")) is not None
