"""The event catalog: a project's event types, each with an optional JSON Schema of the
events' ``data`` (Convoy's ``event-types``).

Pure decisions only: what a valid entry is, how an update or an import merges into the
stored entry, how an OpenAPI document's ``webhooks`` become entries, and the compiled
schemas that publishing checks ``data`` against (the project setting
``validate_event_schemas``).

Schemas are compiled with ``jsonschema-rs`` (Rust): JSON Schema 2020-12 unless the
schema's ``$schema`` names another draft. Compiling never reaches the network (``offline``:
a ``$ref`` to a remote document is refused as unresolvable) and regular expressions run
with a bounded backtracking budget, so a hostile schema cannot make a publish slow.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import jsonschema_rs
import orjson

from hookcast.domain.errors import ValidationError

MAX_NAME_CHARS = 200
MAX_CATEGORY_CHARS = 200
MAX_DESCRIPTION_CHARS = 4000
#: the largest ``json_schema`` and ``example``, each, as compact JSON
MAX_DOCUMENT_BYTES = 65_536
#: entries in one import
MAX_IMPORT = 500
#: characters of an OpenAPI document given as text (``spec``)
MAX_SPEC_CHARS = 16 * 1_048_576
#: event types in one project
MAX_PER_PROJECT = 10_000
#: components one imported webhook schema may pull in through ``$ref``
MAX_COMPONENTS = 500
#: errors named in a refusal, and the characters kept of each message
_MAX_ERRORS = 3
_MAX_MESSAGE_CHARS = 300

#: ``pattern`` and ``patternProperties`` run with a backtracking budget (a pattern that
#: exhausts it does not match): no schema can make validation slow
_PATTERNS = jsonschema_rs.FancyRegexOptions(
    backtrack_limit=100_000, size_limit=1 << 20, dfa_size_limit=1 << 20
)


@dataclass(frozen=True, slots=True)
class EventType:
    """One entry of a project's catalog. ``json_schema`` describes the events' ``data``;
    ``example`` is a sample ``data`` (for a portal); None when absent."""

    id: str
    project_id: str
    name: str
    category: str
    description: str
    json_schema: dict[str, Any] | None
    example: Any
    deprecated_at_us: int | None
    created_at_us: int
    updated_at_us: int


@dataclass(frozen=True, slots=True)
class EventTypeFields:
    """What a create, an update or one import entry says. None: not given (an update or
    an import keeps the stored value); an empty ``category`` or ``description`` keeps it
    too, as Convoy does; ``json_schema`` ``{}`` removes the schema."""

    name: str
    category: str | None = None
    description: str | None = None
    json_schema: dict[str, Any] | None = None
    example: Any = None


class Outcome(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


# ---------------------------------------------------------------- validation


def check_name(name: Any, where: str = "name") -> str:
    if not isinstance(name, str) or not name:
        if where == "name":
            raise ValidationError("please provide a name for this event type")
        raise ValidationError(f"{where}: please provide a name")
    if len(name) > MAX_NAME_CHARS:
        raise ValidationError(f"{where}: at most {MAX_NAME_CHARS} characters")
    if name != name.strip() or not name.isprintable():
        raise ValidationError(
            f"{where}: must not contain control characters or begin or end with spaces"
        )
    if name == "*":
        raise ValidationError(f"{where}: '*' matches every event type; name one type")
    return name


def _check_text(value: Any, limit: int, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{where}: must be a string")
    if len(value) > limit:
        raise ValidationError(f"{where}: at most {limit} characters")
    if "\x00" in value:
        raise ValidationError(f"{where}: must not contain NUL characters (\\u0000)")
    return value


def _size(doc: Any, where: str) -> None:
    if len(orjson.dumps(doc)) > MAX_DOCUMENT_BYTES:
        raise ValidationError(f"{where}: at most {MAX_DOCUMENT_BYTES} bytes of JSON")


def check_fields(fields: EventTypeFields, where: str = "") -> EventTypeFields:
    """*fields* if each is within its bounds and the schema compiles (and the example, when
    both are given, matches it); else 400 naming the field (prefixed by *where*)."""
    check_name(fields.name, f"{where}name")
    _check_text(fields.category, MAX_CATEGORY_CHARS, f"{where}category")
    _check_text(fields.description, MAX_DESCRIPTION_CHARS, f"{where}description")
    if fields.json_schema is not None:
        if not isinstance(fields.json_schema, dict):
            raise ValidationError(f"{where}json_schema: must be a JSON object (a JSON Schema)")
        _size(fields.json_schema, f"{where}json_schema")
        if fields.json_schema:
            compile_schema(fields.json_schema, f"{where}json_schema")
    if fields.example is not None:
        _size(fields.example, f"{where}example")
    return fields


# ---------------------------------------------------------------- compiled schemas


def pointer(path: Iterable[str | int]) -> str:
    """A JSON Pointer (RFC 6901) to the place *path* names; ``the root`` for the root."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else "the root"


def _clip(text: str) -> str:
    text = text.splitlines()[0] if text else text
    if len(text) > _MAX_MESSAGE_CHARS:
        return text[: _MAX_MESSAGE_CHARS - 1] + "…"
    return text


def _message(exc: jsonschema_rs.ValidationError) -> str:
    """The error's message, a long value it begins with quoted shortened (``"xxx…" is not
    of type "integer"``), so what is wrong is still said within the bound."""
    message = exc.message
    if len(message) > _MAX_MESSAGE_CHARS // 2:
        try:
            quoted = orjson.dumps(exc.instance).decode()
        except TypeError:
            quoted = ""
        if len(quoted) > 40 and message.startswith(quoted):
            message = f"{quoted[:40]}… ({len(quoted)} characters){message[len(quoted) :]}"
    return _clip(message)


def _refusal(exc: Exception) -> str:
    if isinstance(exc, jsonschema_rs.ValidationError):
        return f"at {pointer(exc.instance_path)}: {_message(exc)}"
    return _clip(str(exc))


class CompiledSchema:
    """A schema compiled once; :meth:`problem` checks one ``data`` against it."""

    __slots__ = ("_validator",)

    def __init__(self, validator: jsonschema_rs.Validator) -> None:
        self._validator = validator

    def problem(self, data: Any) -> str | None:
        """None when *data* matches; else up to three errors, each with the JSON Pointer
        of the failing place in *data*: ``at /amount: "x" is not of type "integer"``."""
        try:
            if self._validator.is_valid(data):
                return None
            errors = list(itertools.islice(self._validator.iter_errors(data), _MAX_ERRORS))
        except ValueError as exc:  # a value the validator cannot read
            return _clip(str(exc))
        return "; ".join(_refusal(e) for e in errors) or "does not match"


def compile_schema(schema: dict[str, Any], where: str = "json_schema") -> CompiledSchema:
    """The compiled schema, or 400 saying where *schema* breaks the JSON Schema rules."""
    try:
        validator = jsonschema_rs.validator_for(schema, offline=True, pattern_options=_PATTERNS)
    except (ValueError, jsonschema_rs.ReferencingError) as exc:
        raise ValidationError(f"{where} is not a valid JSON Schema: {_refusal(exc)}") from exc
    return CompiledSchema(validator)


# ---------------------------------------------------------------- create, update, import


def new_event_type(
    project_id: str, fields: EventTypeFields, event_type_id: str, now_us: int
) -> EventType:
    created = EventType(
        id=event_type_id,
        project_id=project_id,
        name=fields.name,
        category=fields.category or "",
        description=fields.description or "",
        json_schema=fields.json_schema or None,
        example=fields.example,
        deprecated_at_us=None,
        created_at_us=now_us,
        updated_at_us=now_us,
    )
    _example_matches(created)
    return created


def merge(existing: EventType, fields: EventTypeFields, now_us: int) -> tuple[EventType, Outcome]:
    """*existing* with what *fields* gives (see :class:`EventTypeFields`), and whether that
    changed anything (an unchanged entry keeps its ``updated_at``)."""
    if fields.name != existing.name:
        raise ValidationError("an event type's name cannot be changed")
    merged = replace(
        existing,
        category=fields.category or existing.category,
        description=fields.description or existing.description,
        json_schema=(
            existing.json_schema if fields.json_schema is None else (fields.json_schema or None)
        ),
        example=existing.example if fields.example is None else fields.example,
    )
    if merged == existing:
        return existing, Outcome.UNCHANGED
    _example_matches(merged)
    return replace(merged, updated_at_us=max(now_us, existing.updated_at_us + 1)), Outcome.UPDATED


def _example_matches(et: EventType) -> None:
    if et.json_schema is None or et.example is None:
        return
    problem = compile_schema(et.json_schema).problem(et.example)
    if problem is not None:
        raise ValidationError(
            f"the example of {et.name!r} does not match its json_schema: {problem}"
        )


def deprecate(et: EventType, now_us: int) -> EventType:
    """Deprecated from *now_us*; an entry already deprecated keeps its date."""
    if et.deprecated_at_us is not None:
        return et
    return replace(et, deprecated_at_us=now_us, updated_at_us=max(now_us, et.updated_at_us + 1))


def plan_import(
    project_id: str,
    entries: list[EventTypeFields],
    existing: dict[str, EventType],
    new_id: Callable[[], str],
    now_us: int,
) -> list[tuple[EventType, Outcome]]:
    """Each entry created or merged into the stored entry of its name (an upsert)."""
    out: list[tuple[EventType, Outcome]] = []
    for fields in entries:
        found = existing.get(fields.name)
        if found is None:
            out.append((new_event_type(project_id, fields, new_id(), now_us), Outcome.CREATED))
        else:
            out.append(merge(found, fields, now_us))
    return out


def check_import(entries: list[EventTypeFields], *, openapi: bool) -> list[EventTypeFields]:
    """Bounded in number, each valid, each name once; a refusal names the entry
    (``webhooks.<name>.`` of an OpenAPI document, else ``event_types[i].``)."""
    if not entries:
        raise ValidationError("nothing to import: no event types given")
    if len(entries) > MAX_IMPORT:
        raise ValidationError(f"at most {MAX_IMPORT} event types in one import")
    seen: set[str] = set()
    for i, fields in enumerate(entries):
        where = f"webhooks.{str(fields.name)[:100]}." if openapi else f"event_types[{i}]."
        check_fields(fields, where)
        if fields.name in seen:
            raise ValidationError(f"{where}name: {fields.name!r} is given twice")
        seen.add(fields.name)
    return entries


# ---------------------------------------------------------------- OpenAPI webhooks

_SCHEMAS = "#/components/schemas/"


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _components(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    components = doc.get("components")
    found = components.get(kind) if isinstance(components, dict) else None
    return found if isinstance(found, dict) else {}


def _local(doc: dict[str, Any], node: Any, prefix: str, where: str) -> Any:
    """*node*, or the component it refers to (``$ref`` under *prefix*), one step."""
    if not isinstance(node, dict) or "$ref" not in node:
        return node
    ref = node["$ref"]
    if not isinstance(ref, str) or not ref.startswith(prefix):
        raise ValidationError(f"{where}: unsupported $ref {str(ref)[:100]!r}")
    name = _unescape(ref[len(prefix) :])
    found = _components(doc, prefix.split("/")[2])
    if name not in found:
        raise ValidationError(f"{where}: $ref {ref[:100]!r} names no component")
    return found[name]


def _component_refs(node: Any) -> Iterable[str]:
    stack = [node]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            ref = value.get("$ref")
            if isinstance(ref, str) and ref.startswith(_SCHEMAS):
                yield ref
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _rewrite(node: Any) -> Any:
    """*node* with ``#/components/schemas/X`` refs pointing at ``#/$defs/X`` instead."""
    if isinstance(node, dict):
        out = {k: _rewrite(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMAS):
            out["$ref"] = "#/$defs/" + ref[len(_SCHEMAS) :]
        return out
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def _standalone(doc: dict[str, Any], schema: dict[str, Any], where: str) -> dict[str, Any]:
    """A webhook's schema as a document of its own: the component schemas it refers to
    (directly or not) copied under its ``$defs``."""
    components = _components(doc, "schemas")
    needed: dict[str, Any] = {}
    pending: list[Any] = [schema]
    while pending:
        for ref in _component_refs(pending.pop()):
            name = _unescape(ref[len(_SCHEMAS) :])
            if name in needed:
                continue
            if "/" in ref[len(_SCHEMAS) :]:
                raise ValidationError(f"{where}: unsupported $ref {ref[:100]!r}")
            if name not in components:
                raise ValidationError(f"{where}: $ref {ref[:100]!r} names no component")
            if len(needed) >= MAX_COMPONENTS:
                raise ValidationError(f"{where}: more than {MAX_COMPONENTS} component schemas")
            needed[name] = components[name]
            pending.append(components[name])
    if not needed:
        return schema
    defs = schema.get("$defs") or {}
    if not isinstance(defs, dict):
        raise ValidationError(f"{where}: $defs must be an object")
    defs = dict(defs)
    for name, component in needed.items():
        if name in defs:
            raise ValidationError(f"{where}: $defs already has {name!r}; rename the component")
        defs[name] = _rewrite(component)
    out = _rewrite(schema)
    out["$defs"] = defs
    return out  # type: ignore[no-any-return]


def _media(content: Any) -> dict[str, Any] | None:
    if not isinstance(content, dict):
        return None
    if isinstance(content.get("application/json"), dict):
        return content["application/json"]  # type: ignore[no-any-return]
    for media_type, media in content.items():
        if str(media_type).split(";")[0].strip().endswith("json") and isinstance(media, dict):
            return media
    return None


def _example(media: dict[str, Any], schema: Any) -> Any:
    if media.get("example") is not None:
        return media["example"]
    examples = media.get("examples")
    if isinstance(examples, dict):
        for item in examples.values():
            if isinstance(item, dict) and "$ref" not in item and item.get("value") is not None:
                return item["value"]
    if isinstance(schema, dict):
        if schema.get("example") is not None:
            return schema["example"]
        listed = schema.get("examples")
        if isinstance(listed, list) and listed:
            return listed[0]
    return None


def _text(node: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = node.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _webhook(doc: dict[str, Any], name: str, item: Any) -> EventTypeFields:
    where = f"webhooks.{name[:100]}"
    item = _local(doc, item, "#/components/pathItems/", where)
    operation = item.get("post") if isinstance(item, dict) else None
    if not isinstance(operation, dict):
        raise ValidationError(f"{where}: no post operation")
    body = _local(doc, operation.get("requestBody"), "#/components/requestBodies/", where)
    media = _media(body.get("content")) if isinstance(body, dict) else None
    schema: Any = None if media is None else media.get("schema")
    example = None if media is None else _example(media, schema)
    if schema is True:
        schema = None
    elif schema is False:
        schema = {"not": {}}
    elif schema is not None and not isinstance(schema, dict):
        raise ValidationError(f"{where}: the request body schema must be a JSON object")
    tags = operation.get("tags")
    return EventTypeFields(
        name=name,
        category=tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) else None,
        description=_text(operation, "description", "summary")
        or (_text(item, "description", "summary") if isinstance(item, dict) else None),
        json_schema=None if schema is None else _standalone(doc, schema, where),
        example=example,
    )


def from_openapi(doc: dict[str, Any]) -> list[EventTypeFields]:
    """One entry per webhook of an OpenAPI document (3.1's ``webhooks``, or
    ``x-webhooks``): its name, the first tag of its ``post`` operation as the category,
    its description (or summary), the ``application/json`` request body's schema (the
    component schemas it refers to carried along under ``$defs``) and an example."""
    hooks = doc.get("webhooks")
    if hooks is None:
        hooks = doc.get("x-webhooks")
    if not isinstance(hooks, dict) or not hooks:
        raise ValidationError(
            "the OpenAPI document has no webhooks: import reads an OpenAPI 3.1 `webhooks`"
            " object (or `x-webhooks`)"
        )
    if len(hooks) > MAX_IMPORT:
        raise ValidationError(f"at most {MAX_IMPORT} event types in one import")
    return [_webhook(doc, str(name), item) for name, item in hooks.items()]
