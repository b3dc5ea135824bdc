#!/usr/bin/env python3
"""Writes events/: API Gateway HTTP API (payload 2.0) events, one per endpoint and case.

Names are <function>.<status>.<case>.json; shared/tests/api/fixtures.rs sends each one
through its function and checks the status (and, for errors, that <case> is the code).
Read and delete events run against the records the write endpoints' 201 events create.
Run it again after changing the cases below: python3 scripts/generate-events.py
"""
import base64
import gzip
import json
import pathlib
import tomllib

# A test secret (see fixtures.rs), not a key of any deployment.
FIXTURE_SECRET = "dfk_test_0000000000f1c7e5_" + "f1c7e5" * 8
UNKNOWN_SECRET = "dfk_test_00000000000dead0_" + "0" * 48

REFERENCE = {
    "users-upsert": {
        "external_user_id": "usr_123", "email": "user@example.com", "name": "John Doe",
        "created_at": "2026-03-23T10:30:00Z", "plan": "pro", "status": "active",
        "subscription_status": "active", "billing_model": "subscription", "billing_interval": "month",
        "installed_at": "2026-03-23T10:30:00Z", "install_platform": "ios", "install_source": "producthunt",
        "app_version": "1.4.2", "metadata": {"source": "producthunt", "company": "Acme Labs"},
    },
    "events": {
        "event": "app_installed",
        "user": {"external_user_id": "usr_123", "email": "user@example.com", "name": "John Doe"},
        "properties": {"install_platform": "ios", "install_source": "producthunt", "app_version": "1.4.2"},
        "event_timestamp": "2026-03-23T10:30:00Z",
    },
    "products-upsert": {
        "external_product_id": "prod_roman_pro", "sku": "ROMAN-PRO", "title": "Roman Pro", "type": "product",
        "description": "Training app for modern athletes.", "short_description": "Roman mobile training",
        "currency": "USD", "price": "29.00", "sale_price": "19.00", "is_active": True,
    },
    "sales-upsert": {
        "sale_id": "order_1001", "date": "2026-03-23T16:45:00Z", "quantity": 2, "total": "58.00",
        "buyer": {"external_user_id": "usr_123", "email": "user@example.com", "name": "John Doe"},
        "product": {"external_product_id": "prod_roman_pro", "sku": "ROMAN-PRO", "title": "Roman Pro",
                    "currency": "USD", "price": "29.00"},
    },
    "conversations-upsert": {
        "thread_id": "conv_support_1001", "last_message_at": "2026-03-24T09:00:00Z",
        "channel": {"external_channel_id": "app_support_main", "display_name": "In-App Support", "type": "app_inbox"},
        "contact": {"external_user_id": "usr_123", "email": "user@example.com", "name": "John Doe",
                    "phone": "+15551234567"},
        "metadata": {"topic": "billing", "plan": "pro"},
    },
    "messages-upsert": {
        "message_id": "msg_support_1001", "thread_id": "conv_support_1001", "direction": "in",
        "text": "I need help with my billing screen.", "sent_at": "2026-03-24T09:15:00Z", "delivery_status": "read",
        "channel": {"external_channel_id": "app_support_main", "display_name": "In-App Support", "type": "app_inbox"},
        "contact": {"external_user_id": "usr_123", "email": "user@example.com", "name": "John Doe"},
        "metadata": {"screen": "billing_modal", "device": "ios"},
    },
    "bookings-upsert": {
        "booking_id": "booking_1001", "title": "Roman onboarding call", "booking_type": "video_call",
        "status": "confirmed", "scheduled_at": "2026-03-25T10:30:00Z", "duration_minutes": 45,
        "location": "Google Meet", "notes": "Booked from inside the mobile app.",
        "client": {"external_user_id": "usr_123", "email": "user@example.com", "name": "John Doe"},
        "service_external_ids": ["svc_onboarding"],
    },
}

ROOT = pathlib.Path(__file__).resolve().parent.parent
# function -> (method, path below /api/developer/, its other paths), from endpoints.toml.
PATHS = {
    endpoint["function"]: (endpoint["method"], endpoint["path"], endpoint.get("also", []))
    for endpoint in tomllib.loads((ROOT / "endpoints.toml").read_text())["endpoint"]
}

# batch/: items of several types, one of them refused (its result is a 400, the batch a 200).
BATCH = {"batch": [
    {"type": "user", **REFERENCE["users-upsert"]},
    {"type": "event", "idempotency_key": "evt-usr_123-app_opened-20260324T080000Z",
     "event": "app_opened", "user": {"external_user_id": "usr_123"}, "event_timestamp": "2026-03-24T08:00:00Z"},
    {"type": "product", "external_product_id": "svc_onboarding", "title": "Onboarding call", "product_type": "service"},
    {"type": "sale", **REFERENCE["sales-upsert"]},
    {"type": "booking", **REFERENCE["bookings-upsert"]},
    {"type": "user", "name": "No identity"},
]}


def gzipped(body):
    """A gzip body (bytes: the event carries it base64-encoded, as API Gateway does)."""
    return gzip.compress(json.dumps(body).encode(), mtime=0)

# (function, status, case, body or None, headers)
CASES = [
    ("health", 200, "ok", None, {}),
    ("me", 200, "ok", None, {}),
    ("me", 401, "missing_authorization", None, {"authorization": None}),
    ("me", 401, "invalid_api_key", None, {"authorization": f"Bearer {UNKNOWN_SECRET}"}),
    ("users-upsert", 400, "missing_user_identity", {"name": "John Doe", "plan": "pro"}, {}),
    ("users-upsert", 400, "invalid_field", {"external_user_id": "usr_123", "install_count": "three"}, {}),
    ("events", 201, "created", REFERENCE["events"],
     {"idempotency-key": "evt-usr_123-app_installed-20260323T103000Z"}),
    ("events", 400, "missing_user_identity", {"event": "app_opened", "user": {"name": "John Doe"}}, {}),
    ("products-upsert", 400, "missing_product_identity", {"title": "Roman Pro"}, {}),
    ("sales-upsert", 400, "missing_sale_identity", {"total": "58.00"}, {}),
    ("sales-upsert", 400, "missing_user_identity", {"sale_id": "order_1001", "buyer": {"name": "John"}}, {}),
    ("conversations-upsert", 400, "missing_thread_identity", {"last_message_at": "2026-03-24T09:00:00Z"}, {}),
    ("messages-upsert", 400, "missing_message_identity", {"thread_id": "conv_support_1001", "text": "hi"}, {}),
    ("bookings-upsert", 400, "missing_booking_identity", {"scheduled_at": "2026-03-25T10:30:00Z"}, {}),
    ("bookings-upsert", 400, "missing_booking_scheduled_at", {"booking_id": "booking_1001"}, {}),
    ("batch", 200, "ok", BATCH, {}),
    ("batch", 200, "ok_gzip", gzipped(BATCH), {"content-encoding": "gzip"}),
    ("batch", 400, "invalid_json", '{"batch": [', {}),
    ("batch", 400, "invalid_encoding", b"not gzip", {"content-encoding": "gzip"}),
    ("batch", 413, "too_many_items", {"batch": [{"type": "user", "external_user_id": f"usr_{i}"} for i in range(501)]}, {}),
    ("batch", 415, "unsupported_encoding", BATCH, {"content-encoding": "br"}),
    ("batch", 401, "missing_authorization", BATCH, {"authorization": None}),
]
for function, body in REFERENCE.items():
    if function != "events":
        CASES.append((function, 201, "created", body, {}))
    CASES.append((function, 400, "invalid_json", '{"oops": ', {}))
    CASES.append((function, 401, "missing_authorization", body, {"authorization": None}))

# Reads: (function, status, case, path parameters, query string)
READS = [
    ("users-get", 200, "ok", {"external_user_id": "usr_123"}, ""),
    ("users-get", 404, "user_not_found", {"external_user_id": "usr_unknown"}, ""),
    ("users-get", 401, "missing_authorization", {"external_user_id": "usr_123"}, ""),
    ("users-list", 200, "ok", {}, "plan=pro&limit=10"),
    ("users-list", 400, "invalid_field", {}, "inactive_days=0"),
    ("users-list", 400, "invalid_cursor", {}, "cursor=bm90LWEtY3Vyc29y"),
    ("stats-users", 200, "ok", {}, "group_by=lifecycle_stage&billing_state=paying"),
    ("stats-users", 400, "invalid_field", {}, "group_by=plan"),
    ("stats-users", 400, "missing_field", {}, "lifecycle_stage=new"),
    ("conversations-get", 200, "ok", {"thread_id": "conv_support_1001"}, "limit=50"),
    ("conversations-get", 404, "thread_not_found", {"thread_id": "conv_unknown"}, ""),
    ("inbox", 200, "ok", {}, "status=awaiting_reply"),
    ("inbox", 400, "invalid_field", {}, "status=closed"),
    ("bookings-list", 200, "ok", {}, "from=2026-03-25T00:00:00Z&to=2026-03-26T00:00:00Z"),
    ("bookings-list", 400, "missing_field", {}, "from=2026-03-25T00:00:00Z"),
    ("changes-list", 200, "ok", {}, "limit=10"),
    ("changes-list", 400, "invalid_cursor", {}, "cursor=x"),
    ("users-delete", 200, "ok", {"external_user_id": "usr_123"}, ""),
    ("users-delete", 401, "missing_authorization", {"external_user_id": "usr_123"}, ""),
    # A client named by its email (users/email/{email}/): the reference user's email.
    ("users-get", 200, "ok_by_email", {"email": "user@example.com"}, ""),
    ("users-delete", 200, "ok_by_email", {"email": "nobody@example.com"}, ""),
]


def event(function, case, body, extra_headers, params=None, query=""):
    method, relative, others = PATHS[function]
    # The path whose parameters are the event's (users/email/{email}/ for an email).
    relative = next(
        (path for path in [relative, *others] if all(f"{{{name}}}" in path for name in params or {})), relative
    )
    route = f"/api/developer/{relative}"
    path = route.format(**(params or {}))
    headers = {"authorization": f"Bearer {FIXTURE_SECRET}", "user-agent": "curl/8.5.0",
               "host": "localhost:9000"}
    if body is not None:
        headers["content-type"] = "application/json"
    for name, value in extra_headers.items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    result = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "curl/8.5.0"},
            "requestId": f"fixture-{function}-{case}",
            "routeKey": f"{method} {route}",
            "stage": "$default",
            "time": "24/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795514400000,
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        if isinstance(body, bytes):
            result["body"] = base64.b64encode(body).decode()
            result["isBase64Encoded"] = True
        else:
            result["body"] = body if isinstance(body, str) else json.dumps(body)
    if params:
        result["pathParameters"] = params
    return result


def main():
    out = ROOT / "events"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    for function, status, case, body, headers in CASES:
        path = out / f"{function}.{status}.{case}.json"
        path.write_text(json.dumps(event(function, case, body, headers), indent=2) + "\n")
    for function, status, case, params, query in READS:
        headers = {"authorization": None} if case == "missing_authorization" else {}
        path = out / f"{function}.{status}.{case}.json"
        path.write_text(json.dumps(event(function, case, None, headers, params, query), indent=2) + "\n")
    print(f"wrote {len(CASES) + len(READS)} events to {out}")


if __name__ == "__main__":
    main()
