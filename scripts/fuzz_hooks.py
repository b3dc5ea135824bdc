"""Schemathesis hooks for scripts/fuzz-api.sh: where the local harness or the spec language
cannot say what production does, the generated request is adjusted here, each for a reason.
"""

import re
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

import schemathesis

# Hypothesis describes strategies by parsing their source with `ast`; under CPython 3.11.7 that
# fails ("AST constructor recursion depth mismatch") when the stack is already deep, as it is
# for the free-form JSON fields. More headroom avoids it.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

# Times that move a record forward may be at most 24 hours ahead of the server's clock
# (input.rs, MAX_CLOCK_SKEW): a limit relative to "now" that JSON Schema cannot state.
# Later generated times are moved into the past so a valid request stays valid, at any depth
# (a nested user's lifecycle times: `contact.installed_at`, `user.created_at`, ...); the limit
# itself is tested in shared/tests/api/limits.rs.
NOT_IN_FUTURE = (
    "event_timestamp",
    "sent_at",
    "last_message_at",
    # A user's lifecycle times (input.rs, UserFields::lifecycle_times).
    "installed_at",
    "last_opened_at",
    "uninstalled_at",
    "last_payment_at",
    "subscription_started_at",
    "created_at",
)
PAST = "2020-01-01T00:00:00Z"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _in_future(value: object) -> bool:
    if not isinstance(value, str) or not RFC3339.match(value):
        return False
    try:
        at = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    # An hour short of the limit, so the server's clock may be a little behind ours.
    return at > datetime.now(timezone.utc) + timedelta(hours=23)


def _into_past(obj: object) -> None:
    if isinstance(obj, dict):
        for name in NOT_IN_FUTURE:
            if _in_future(obj.get(name)):
                obj[name] = PAST
        for value in obj.values():
            _into_past(value)
    elif isinstance(obj, list):
        for value in obj:
            _into_past(value)


# Ids are at most 256 characters (the spec's pattern) and 991 bytes of UTF-8 (what the
# longest DynamoDB key leaves for one, store/keys.rs), a limit JSON Schema cannot state:
# a generated id past it is cut to 991 bytes at a character boundary. The limit itself is
# tested in shared/tests/api/limits.rs.
MAX_ID_BYTES = 991
ID_FIELDS = (
    "external_user_id", "external_product_id", "external_channel_id", "sale_id",
    "thread_id", "message_id", "booking_id",
)


def _fit_id(value: object) -> object:
    if not isinstance(value, str) or len(value.encode("utf-8")) <= MAX_ID_BYTES:
        return value
    return value.encode("utf-8")[:MAX_ID_BYTES].decode("utf-8", errors="ignore")


def _fit_ids(obj: object) -> None:
    if isinstance(obj, dict):
        for name, value in obj.items():
            if name in ID_FIELDS:
                obj[name] = _fit_id(value)
            elif name == "service_external_ids" and isinstance(value, list):
                obj[name] = [_fit_id(item) for item in value]
            else:
                _fit_ids(value)
    elif isinstance(obj, list):
        for item in obj:
            _fit_ids(item)


@schemathesis.hook
def map_body(context, body):
    # Both walk the whole body: nested users and batch/'s items (each a single endpoint's body).
    _into_past(body)
    _fit_ids(body)
    return body


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    if isinstance(path_parameters, dict):
        _fit_ids(path_parameters)
    return path_parameters


# `cargo lambda watch` (the local stand-in for API Gateway) answers a JSON body that is not
# UTF-8 with its own 500 before any function runs. The function turns such a body into
# 400 invalid_json (input.rs tests), so the harness does not send what only it fails on.
@schemathesis.hook
def filter_body(context, body):
    data = getattr(body, "data", body)
    if isinstance(data, (bytes, bytearray)):
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _instant(value: object):
    if not isinstance(value, str) or not RFC3339.match(value):
        return None
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return None


# Query strings of the reads. A cursor is valid only as the server made it (for this org and
# query), so a generated one is always `invalid_cursor`: it is dropped (cursors are tested in
# cursor.rs and shared/tests/api/reads*.rs). `bookings/` needs `to` after `from`, a relation
# JSON Schema cannot state: an inverted window is swapped, an empty one made a second long.
@schemathesis.hook
def map_query(context, query):
    if not isinstance(query, dict):
        return query
    if isinstance(query.get("cursor"), str):
        del query["cursor"]
    _fit_segment(query)
    start, end = _instant(query.get("from")), _instant(query.get("to"))
    if start is not None and end is not None:
        if end < start:
            query["from"], query["to"] = query["to"], query["from"]
        elif end == start:
            try:
                query["to"] = _rfc3339(start + timedelta(seconds=1))
            except OverflowError:
                query["from"] = _rfc3339(start - timedelta(seconds=1))
    return query


def _rfc3339(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# Segments (`users/`, `stats/users/`): relations between parameters that JSON Schema cannot
# state, each refused with `invalid_field` by shared/src/segment.rs (and tested in
# shared/tests/api/segments.rs). A generated query that breaks one is made to keep it.
SEGMENT_NEEDS = {
    "did_within_days": "did",
    "did_count_gte": "did",
    "did_not_within_days": "did_not",
    "revenue_gte": "currency",
    "revenue_lt": "currency",
}
SEGMENT_RANGES = ("revenue", "total_payments_count", "install_count")


def _number(value: object):
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _fit_segment(query: dict) -> None:
    # An empty (or blank) event name is no name at all.
    for name in ("did", "did_not"):
        if name in query and not str(query[name]).strip():
            del query[name]
    for name, needs in SEGMENT_NEEDS.items():
        if name in query and needs not in query:
            del query[name]
    if "currency" in query:
        if "revenue_gte" in query or "revenue_lt" in query:
            # The spec's pattern admits any three letters; the server, ISO 4217 codes only.
            query["currency"] = "USD"
        else:
            del query["currency"]
    for name in SEGMENT_RANGES:
        low, high = _number(query.get(f"{name}_gte")), _number(query.get(f"{name}_lt"))
        if low is not None and high is not None and low >= high:
            del query[f"{name}_lt"]
    if "did" in query and str(query.get("did_not", "")).strip() == str(query["did"]).strip():
        query.pop("did_not", None)
        query.pop("did_not_within_days", None)
    inactive, active = _number(query.get("inactive_days")), _number(query.get("active_within_days"))
    if inactive is not None and active is not None and inactive >= active:
        del query["active_within_days"]
