"""JSON Schema of the API's response models, which are TypedDicts: our own small generator, not pydantic.

Why TypedDicts and not pydantic models: a route's JSON *is* the dict it builds, and mypy (strict) checks every
key and value of that dict against its TypedDict where it is built, so the document generated from the same
class cannot describe anything else; nothing is validated or copied per request (a page of 100 images with
their metadata goes to `jsonify` as built), and the web and the worker gain no dependency. Pydantic would
validate and re-serialise every answer, needs `exclude_unset` games for the fields that are absent rather than
null, and its schemas (titles everywhere, `anyOf` for nullables, `$defs`) would need rewriting to stay the
document clients know.

What a model may say, and what it becomes:
- a TypedDict class `FooJson`: the component `Foo` (its docstring is the description), referenced by `$ref`;
  `NotRequired[...]` keys are optional, every other key required;
- `Annotated[T, {...}]`: T's schema with these keywords added (description, format, minimum, pattern...);
  `Annotated[T, Named("Foo", {...})]`: the component `Foo` with that schema, referenced (a shared enum);
  `Annotated[T, Ref("Foo")]`: a reference to a component the document defines elsewhere (the metadata);
- str, int, float, bool, None, `Literal[...]` of strings, `X | Y` (one `type` list when every member is a plain
  type), `list[X]`, `dict[str, X]`, Any (no constraint).
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NotRequired, Union, get_args, get_origin, get_type_hints, is_typeddict

Json = dict[str, Any]
PLAIN = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


@dataclass(frozen=True)
class Ref:
    """A component defined elsewhere in the document."""

    name: str


@dataclass(frozen=True)
class Named:
    """A schema published once as a component of this name, and referenced wherever it is used."""

    name: str
    schema: Json = field(hash=False)


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


class Schemas:
    """The components reached from the models given to `of`, each generated once."""

    def __init__(self) -> None:
        self.components: Json = {}

    def of(self, annotation: Any) -> Json:
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is Annotated:
            return self._annotated(args[0], args[1:])
        if is_typeddict(annotation):
            return self._model(annotation)
        if annotation in PLAIN:
            return {"type": PLAIN[annotation]}
        if annotation is Any:
            return {}
        if origin is Literal:
            return {"type": "string", "enum": list(args)}
        if origin in (Union, types.UnionType):
            members = [self.of(arg) for arg in args]
            if all(set(member) == {"type"} for member in members):
                return {"type": [member["type"] for member in members]}
            return {"anyOf": members}
        if origin is list:
            return {"type": "array", "items": self.of(args[0])}
        if origin is dict and args[0] is str:
            values = self.of(args[1])
            return {"type": "object", **({"additionalProperties": values} if values else {})}
        raise TypeError(f"no JSON Schema for {annotation!r}")

    def _annotated(self, base: Any, extras: tuple[Any, ...]) -> Json:
        schema = self.of(base)
        for extra in extras:
            if isinstance(extra, Ref):
                schema = ref(extra.name)
            elif isinstance(extra, Named):
                self.components.setdefault(extra.name, extra.schema)
                schema = ref(extra.name)
            else:
                schema = {**schema, **extra}
        return schema

    def _model(self, model: type) -> Json:
        name = model.__name__.removesuffix("Json")
        if name not in self.components:
            self.components[name] = {}  # reserved first: a model may refer to itself
            hints = get_type_hints(model, include_extras=True)
            properties = {key: self.of(_unwrapped(hint)) for key, hint in hints.items()}
            required = [key for key, hint in hints.items() if get_origin(hint) is not NotRequired]
            schema: Json = {"type": "object"}
            if model.__doc__:
                schema["description"] = inspect.cleandoc(model.__doc__)
            if required:
                schema["required"] = required
            self.components[name] = schema | {"properties": properties}
        return ref(name)


def _unwrapped(hint: Any) -> Any:
    return get_args(hint)[0] if get_origin(hint) is NotRequired else hint
