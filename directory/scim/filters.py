"""SCIM filters (RFC 7644 §3.4.2.2) as SQLAlchemy expressions.

``scim2-filter-parser`` parses the filter; this module walks its syntax tree
and asks a resource's attribute table how to compare each attribute, so a
filter runs in the database, never over rows loaded into memory. Anything the
parser refuses, or that names an attribute or operator we cannot compare, is an
``invalidFilter`` error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scim2_filter_parser import ast
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser
from scim2_models import InvalidFilterException
from sqlalchemy import ColumnElement, and_, false, func, not_, or_, true

MAX_FILTER = 2000
STRING_OPS = {"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr"}

Compare = Callable[[Any], ColumnElement[bool]]


@dataclass(frozen=True)
class Attr:
    """How one attribute is compared.

    ``column`` is the SQL value (for multi-valued attributes: the value column
    inside ``exists``); ``exists`` wraps a condition on it into a correlated
    EXISTS; ``ops`` limits the operators (an encrypted value only supports
    ``eq`` through its blind index, see ``custom``).
    """

    column: Any = None
    kind: str = "string"  # string | boolean | datetime
    case_exact: bool = False
    exists: Callable[[ColumnElement[bool] | None], ColumnElement[bool]] | None = None
    ops: frozenset[str] = frozenset(STRING_OPS)
    custom: Callable[[str, str | None], ColumnElement[bool]] | None = None


def parse(text: str) -> ast.AST:
    if len(text) > MAX_FILTER:
        raise InvalidFilterException(detail="The filter is too long.")
    try:
        return SCIMParser().parse(SCIMLexer().tokenize(text))
    except Exception:  # the parser raises several types, all meaning "not a filter"
        raise InvalidFilterException(detail="The filter is not valid SCIM filter syntax.") from None


def attribute_key(path: ast.AttrPath, namespace: ast.AttrPath | None,
                  core_schemas: tuple[str, ...]) -> str:
    if not isinstance(path.attr_name, str):  # emails[value eq "a"].value: a path after a
        raise InvalidFilterException(  # value filter, which the grammar leaves as a Filter
            detail="An attribute path after a value filter is not supported.")
    parts = [path.attr_name]
    if path.sub_attr is not None:
        parts.append(path.sub_attr.value)
    if namespace is not None:
        parts.insert(0, namespace.attr_name)
    name = ".".join(parts).lower()
    uri = (path.uri or (namespace.uri if namespace is not None else None) or "").lower()
    if uri and uri not in core_schemas:
        return f"{uri}:{name}"
    return name


class Translator:
    def __init__(self, attributes: dict[str, Attr], core_schemas: tuple[str, ...]) -> None:
        self.attributes = {key.lower(): value for key, value in attributes.items()}
        self.core_schemas = tuple(s.lower() for s in core_schemas)

    def __call__(self, text: str) -> ColumnElement[bool]:
        return self.visit(parse(text), None)

    def visit(self, node: Any, namespace: ast.AttrPath | None) -> ColumnElement[bool]:
        if isinstance(node, ast.Filter):
            inner_namespace = node.namespace if getattr(node, "namespace", None) else namespace
            if (inner_namespace is not None and namespace is not None
                    and inner_namespace is not namespace
                    and inner_namespace.attr_name != namespace.attr_name):
                raise InvalidFilterException(detail="Nested value filters are not supported.")
            expr = self.visit(node.expr, inner_namespace)
            return not_(expr) if node.negated else expr
        if isinstance(node, ast.LogExpr):
            left, right = self.visit(node.expr1, namespace), self.visit(node.expr2, namespace)
            return and_(left, right) if node.op.lower() == "and" else or_(left, right)
        if isinstance(node, ast.AttrExpr):
            return self.compare(node, namespace)
        raise InvalidFilterException(detail="The filter is not supported.")

    def compare(self, node: ast.AttrExpr, namespace: ast.AttrPath | None) -> ColumnElement[bool]:
        key = attribute_key(node.attr_path, namespace, self.core_schemas)
        attr = self.attributes.get(key)
        op = node.value.lower()
        if attr is None:
            raise InvalidFilterException(detail=f"Filtering on '{key}' is not supported.")
        if op not in attr.ops:
            raise InvalidFilterException(detail=f"'{op}' is not supported on '{key}'.")
        value = node.comp_value.value if node.comp_value is not None else None
        if attr.custom is not None:
            return attr.custom(op, value)
        if op == "pr":
            return attr.exists(None) if attr.exists else _present(attr)
        if value is None or value == "null":
            raise InvalidFilterException(detail="Compare with a value, or use 'pr'.")
        condition = _condition(attr, op, value)
        if attr.exists is None:
            return condition
        if op == "ne":  # multi-valued: no value equals
            return not_(attr.exists(_condition(attr, "eq", value)))
        return attr.exists(condition)


def _present(attr: Attr) -> ColumnElement[bool]:
    if attr.kind == "string":
        return and_(attr.column.is_not(None), attr.column != "")
    return attr.column.is_not(None)


def _condition(attr: Attr, op: str, value: str) -> ColumnElement[bool]:
    if attr.kind == "boolean":
        return _boolean(attr, op, value)
    if attr.kind == "datetime":
        return _datetime(attr, op, value)
    column = attr.column if attr.case_exact else func.lower(attr.column)
    value = value if attr.case_exact else value.lower()
    if op in ("co", "sw", "ew"):
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = {"co": f"%{escaped}%", "sw": f"{escaped}%", "ew": f"%{escaped}"}[op]
        return column.like(pattern, escape="\\")
    return _ordered(column, op, value)


def _ordered(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "eq":
        return column == value
    if op == "ne":
        return or_(column != value, column.is_(None))
    if op == "gt":
        return column > value
    if op == "ge":
        return column >= value
    if op == "lt":
        return column < value
    if op == "le":
        return column <= value
    raise InvalidFilterException(detail=f"'{op}' is not supported here.")


def _boolean(attr: Attr, op: str, value: str) -> ColumnElement[bool]:
    if op not in ("eq", "ne") or value.lower() not in ("true", "false"):
        raise InvalidFilterException(detail="Booleans compare with eq or ne and true or false.")
    wanted = (value.lower() == "true") == (op == "eq")
    return attr.column if wanted else not_(attr.column)


def _datetime(attr: Attr, op: str, value: str) -> ColumnElement[bool]:
    if op in ("co", "sw", "ew"):
        raise InvalidFilterException(detail=f"'{op}' does not apply to a date.")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidFilterException(detail="Dates are written as in RFC 3339.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # "9999-12-31T23:59:59-23:59" is past year 9999 in UTC
        raise InvalidFilterException(detail="The date is out of range.") from None
    return _ordered(attr.column, op, moment)


ALWAYS = true()
NEVER = false()
