"""One operation (a method on a path), declared once with its inputs and its documented answers; `route` binds a
view to it, and the view reads its inputs through `Given`, which parses them with their declarations and
refuses to read one the operation does not declare.

An operation also declares the scope a key must hold to call it (`scope`: the access gate, `api.access`, enforces
it before the body, and the document states it), and the dependencies it `needs` (the catalog, the blob store,
the broker): while one of them is known down, `route` refuses the request with its 503 before the view runs
(`api.outage_breaker.admit`).

The document (`api.openapi`) and `GET /`'s endpoint list are made from the same declarations, in their order;
`routed` checks them against the app's routes (every route declared, every declaration routed), so a route can
neither be missing from the document nor documented without existing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Blueprint, Flask, current_app, request
from flask.typing import ResponseReturnValue

from apercu.api import outage_breaker
from apercu.api.caller import Scope
from apercu.api.errors import CODES, ApiError
from apercu.api.inputs import Declared, Input, Json, Where
from apercu.config import Settings
from apercu.storage.outages import Dependency

T = TypeVar("T")
View = Callable[..., ResponseReturnValue]


@dataclass(frozen=True)
class Operation:
    """What the document says of one operation; its `inputs` are all a view bound to it may read, in the order
    the view parses them (the document lists its parameters in that order too)."""

    method: str
    path: str  # as the document writes it: /images/{id}
    operation_id: str
    tag: str
    summary: str  # also GET /'s description of the endpoint
    responses: Json = field(hash=False)
    description: str = ""
    inputs: tuple[Declared, ...] = ()
    arguments: Mapping[str, str] = field(default_factory=dict, hash=False)  # passed to the view as they are
    # What it cannot answer without: refused at once while one is known down. Not the broker for an upload, which
    # is accepted without it (the recovery sweep queues it later); nothing for the probes, the document, the page.
    needs: tuple[Dependency, ...] = ()
    # What a key must hold to call it when keys are required (`api.access` refuses 403 `insufficient_scope`
    # otherwise, before the body): None where no key is ever asked (public paths, signed renditions).
    scope: Scope | None = None
    # A request body that is no form (a resumable upload's bytes), as the document writes it; None: the form's.
    body: Json | None = field(default=None, hash=False)

    @property
    def rule(self) -> str:
        """The Flask rule of the path: /images/{id} -> /images/<image_id>."""
        variables = {i.name: i.in_rule for i in self.inputs if i.where == "path"}
        return re.sub(r"\{(\w+)\}", lambda m: variables[m[1]], self.path)


class Given:
    """A request's inputs as one operation declares them, parsed when a view asks for them (a view parses some
    only in some cases, and in the order it asks: which error a request with two bad inputs gets is the view's
    choice)."""

    def __init__(self, operation: Operation) -> None:
        self.operation = operation

    def _raw(self, declared: Declared) -> str | None:
        if declared not in self.operation.inputs:
            raise LookupError(f"{declared.name} is not an input of {self.operation.operation_id}")
        return _sent(declared.where, declared.sent_as)

    def __contains__(self, declared: Declared) -> bool:
        return self._raw(declared) is not None

    def get(self, declared: Input[T]) -> T | None:
        """The parsed value; the declared default (None for most text) when absent."""
        raw = self._raw(declared)
        settings: Settings = current_app.extensions["apercu"].settings
        configured = declared.configured(settings)
        return configured.default if raw is None else configured.parse(raw)

    def __getitem__(self, declared: Input[T]) -> T:
        """The parsed value of an input that is always there (a path's) or has a default."""
        value = self.get(declared)
        if value is None:
            raise declared.refused()
        return value


def _sent(where: Where, name: str) -> str | None:
    """What the request sent as this input, if anything (the first value of a repeated one)."""
    if where == "path":
        return (request.view_args or {}).get(name)
    if where == "header":
        return request.headers.get(name)
    if where == "form" and request.is_json:
        return _json_field(name)
    return (request.args if where == "query" else request.form).get(name)


def _json_field(name: str) -> str | None:
    """A form input sent in a JSON object body instead (`POST /images` with `{"url": ...}`): text or absent."""
    body = request.get_json(silent=True)
    value = body.get(name) if isinstance(body, dict) else None
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"the JSON body's {name!r} must be a string", code=CODES[400])
    return value


def route(bp: Blueprint, *operations: Operation, automatic_options: bool = True) -> Callable[[View], View]:
    """Register the view for these operations (one view may serve several paths): it is called with a `Given`,
    and the operation's `arguments`, unless a dependency the operation needs is known down. `automatic_options`
    False where an operation of its own answers OPTIONS on the same path (the resumable uploads')."""

    def register(view: View) -> View:
        by_rule = {(operation.method, operation.rule): operation for operation in operations}

        @functools.wraps(view)
        def serve(**_path: str) -> ResponseReturnValue:
            rule, method = request.url_rule.rule if request.url_rule else "", request.method
            if (method, rule) not in by_rule and method == "HEAD":  # (HEAD is GET's, unless declared itself)
                method = "GET"
            operation = by_rule[(method, rule)]
            outage_breaker.admit(operation.needs)
            return view(Given(operation), **operation.arguments)

        for operation in operations:
            bp.add_url_rule(operation.rule, view.__name__, serve, methods=[operation.method],
                            provide_automatic_options=automatic_options and operation.method != "OPTIONS")
        return view

    return register


def routed(app: Flask, operations: tuple[Operation, ...]) -> tuple[Operation, ...]:
    """The operations, once checked to be exactly the app's routes (the page's static files aside)."""
    rules = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in _declared_methods(rule)
    }
    declared = {(operation.method, operation.rule) for operation in operations}
    if rules != declared:
        raise RuntimeError(f"routes without an operation: {sorted(rules - declared)}; "
                           f"operations without a route: {sorted(declared - rules)}")
    return operations



def _declared_methods(rule: Any) -> set[str]:
    """A rule's methods as operations declare them: not the HEAD Flask adds to a GET, nor its automatic OPTIONS;
    a HEAD or an OPTIONS routed on its own is an operation of its own."""
    methods = set(rule.methods or ())
    declared = methods - {"HEAD", "OPTIONS"}
    if "HEAD" in methods and "GET" not in methods:
        declared.add("HEAD")
    if "OPTIONS" in methods and not getattr(rule, "provide_automatic_options", True):
        declared.add("OPTIONS")
    return declared
