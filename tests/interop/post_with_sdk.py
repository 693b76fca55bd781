#!/usr/bin/env python3
"""Post CloudEvents built and serialized by the official Python SDK to the gateway.

Usage: python3 tests/interop/post_with_sdk.py http://127.0.0.1:PORT/events

Requires tests/interop/requirements.txt (`pip install -r tests/interop/requirements.txt`).

SDK choice: cloudevents==2.2.0, through its `cloudevents.core` API
(`cloudevents.core.v1.event.CloudEvent`, `cloudevents.core.v03.event.CloudEvent`,
`cloudevents.core.bindings.http.to_binary` / `to_structured` with `JSONFormat`):
  * it has first-class event classes for both specversion 1.0 and 0.3, and binary and
    structured HTTP modes for both;
  * its HTTP binding percent-encodes every ce-* header value per HTTP binding v1.0.2
    section 3.1.3.2 (`urllib.parse.quote` with every printable ASCII character except
    space, `"` and `%` safe: upper-case %XX of the UTF-8 bytes for everything else).
The 1.x line (last: 1.13.0, `cloudevents.http.CloudEvent`, `to_binary`, `to_structured`;
kept in 2.x as the deprecated `cloudevents.v1` package) puts attribute values into ce-*
headers raw, without any percent-encoding, so a non-ASCII `subject` would either be sent as
raw (non-ASCII) header bytes or fail in the HTTP client: it cannot do case (5) by itself.

How the SDK (2.2.0) shapes what goes over the wire, which `sent` reflects:
  * `time` must be a timezone-aware `datetime` on the event (a string is rejected). Both
    binary (`ce-time`) and structured (`"time"`) write `datetime.isoformat()` with a
    trailing `+00:00` replaced by `Z`, e.g. `2025-01-02T03:04:05.123456Z` (microseconds
    are written whenever they are non-zero; non-UTC offsets are kept as `+02:00`).
    `sent.time` is that wire string, not the Python object.
  * 0.3 events are the same as 1.0 on the wire apart from `specversion: "0.3"` (JSON data
    goes in `data`; `datacontentencoding` is only added for bytes data, not used here).
  * binary mode: `datacontenttype` becomes `content-type` (not percent-encoded, as the
    spec says); every other attribute, extensions included, becomes a lower-case `ce-NAME`
    header; the body is `json.dumps(data)`.
  * structured mode: `content-type: application/cloudevents+json`, the body is
    `json.dumps` of the attributes plus `data`.

Output: ONE JSON document on stdout, a list with one object per request:
  {"case", "mode", "specversion", "status", "response", "sent", "data", "headers"}
where `sent` maps every attribute on the event to its string value as sent on the wire
(percent-decoded for binary mode), `data` is the JSON data, and `headers` are exactly the
HTTP request headers sent (the request is written with http.client without any header it
would add by itself). The script checks that the wire matches `sent` before posting.

Exit status: 0 when every request got an HTTP response (whatever its status: HTTP error
statuses are reported in the output and judged by the Rust test, not here); 1 with a message
on stderr when a request fails at the transport level (connection refused, reset, timeout),
or when the SDK's output contradicts what it was asked to send; 2 on bad usage; 3 when the
SDK is not installed (`pip install -r tests/interop/requirements.txt`).
"""

import http.client
import json
import sys
import urllib.parse
import uuid
from datetime import datetime, timezone

try:
    import cloudevents
    from cloudevents.core.bindings.http import HTTPMessage, to_binary, to_structured
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v03.event import CloudEvent as CloudEventV03
    from cloudevents.core.v1.event import CloudEvent as CloudEventV1
except ImportError as err:
    print(f"post_with_sdk.py: the CloudEvents SDK is missing ({err}): "
          "pip install -r tests/interop/requirements.txt", file=sys.stderr)
    sys.exit(3)

SDK_VERSION = "2.2.0"

EVENT_TYPE = "com.acme.tenant.lifecycle.upsert"
SOURCE = "//billing.acme.example/sdk-interop"
# Non-ASCII plus the three printable characters the binding says to encode (space, `"`, `%`).
NON_ASCII_SUBJECT = 'café ☕ "über" 100%'
TIMEOUT_S = 30


def spec_percent_encode(value: str) -> str:
    """HTTP binding v1.0.2 section 3.1.3.2, written independently of the SDK: printable
    ASCII (U+0021..U+007E) except `"` and `%` is kept, every other UTF-8 byte is %XX."""
    out = []
    for byte in value.encode("utf-8"):
        if 0x21 <= byte <= 0x7E and byte not in (0x22, 0x25):
            out.append(chr(byte))
        else:
            out.append("%%%02X" % byte)
    return "".join(out)


def wire_string(value) -> str:
    """An attribute value as the SDK writes it (its datetime rule, else str())."""
    if isinstance(value, datetime):
        text = value.isoformat()
        if text.endswith("+00:00"):
            text = text[: -len("+00:00")] + "Z"
        return text
    return str(value)


def fail(message: str) -> None:
    print(f"post_with_sdk.py: {message}", file=sys.stderr)
    sys.exit(1)


def check_wire(case: str, mode: str, message: HTTPMessage, sent: dict, data) -> None:
    """Cross-check the SDK's serialization against `sent`/`data` (what we report)."""
    if mode == "binary":
        for name, value in sent.items():
            if name == "datacontenttype":
                got = message.headers.get("content-type")
            else:
                raw = message.headers.get(f"ce-{name}")
                got = None if raw is None else urllib.parse.unquote(raw, errors="strict")
            if got != value:
                fail(f"{case}: SDK wrote {name}={got!r} in binary mode, event holds {value!r}")
        body = json.loads(message.body)
    else:
        doc = json.loads(message.body)
        body = doc.pop("data", None)
        if doc != sent:
            fail(f"{case}: SDK structured body attributes {doc!r} differ from {sent!r}")
    if body != data:
        fail(f"{case}: SDK wrote data {body!r}, event holds {data!r}")


def post(url: urllib.parse.SplitResult, sdk_headers: dict, body: bytes):
    """POST with http.client, sending exactly the returned headers and nothing else."""
    if url.scheme == "https":
        conn = http.client.HTTPSConnection(url.hostname, url.port, timeout=TIMEOUT_S)
    else:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=TIMEOUT_S)
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    headers = {"host": url.netloc}
    headers.update(sdk_headers)
    headers["content-length"] = str(len(body))
    try:
        conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            # http.client encodes header values as latin-1: any non-ASCII value that slipped
            # through unencoded fails here, which is a finding, reported as a transport error.
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        raw = resp.read()
        status = resp.status
    except (OSError, http.client.HTTPException, UnicodeEncodeError) as err:
        fail(f"POST {url.geturl()} failed at the transport level: {type(err).__name__}: {err}")
    finally:
        conn.close()
    text = raw.decode("utf-8", errors="replace")
    try:
        response = json.loads(text) if text else None
    except ValueError:
        response = text
    return headers, status, response


def main() -> None:
    if len(sys.argv) != 2:
        print("usage: post_with_sdk.py http://HOST:PORT/events", file=sys.stderr)
        sys.exit(2)
    url = urllib.parse.urlsplit(sys.argv[1])
    if url.scheme not in ("http", "https") or not url.hostname:
        print(f"post_with_sdk.py: not an http(s) URL: {sys.argv[1]!r}", file=sys.stderr)
        sys.exit(2)

    if cloudevents.__version__ != SDK_VERSION:
        print(f"post_with_sdk.py: warning: cloudevents {cloudevents.__version__} installed, "
              f"this script was written against {SDK_VERSION}", file=sys.stderr)

    run = uuid.uuid4().hex[:8]
    fmt = JSONFormat()
    cases = [
        # (case, mode, event class, extra attributes)
        ("binary-1.0", "binary", CloudEventV1, {}),
        ("structured-1.0", "structured", CloudEventV1, {}),
        ("binary-0.3", "binary", CloudEventV03, {}),
        ("structured-0.3", "structured", CloudEventV03, {}),
        ("binary-1.0-non-ascii-subject", "binary", CloudEventV1, {"subject": NON_ASCII_SUBJECT}),
    ]

    results = []
    for n, (case, mode, event_cls, extra) in enumerate(cases, start=1):
        attributes = {
            "specversion": "0.3" if event_cls is CloudEventV03 else "1.0",
            "id": f"sdk-{run}-{n}-{uuid.uuid4()}",
            "source": SOURCE,
            "type": EVENT_TYPE,
            "time": datetime.now(timezone.utc),
            "datacontenttype": "application/json",
            "tenant": f"sdk-interop-{run}-{n}",
        }
        attributes.update(extra)
        data = {"plan": "gold", "seats": 10 * n, "case": case, "sdk": f"cloudevents-python {SDK_VERSION}"}
        event = event_cls(attributes, data)

        message = to_binary(event, fmt) if mode == "binary" else to_structured(event, fmt)
        sent = {name: wire_string(value) for name, value in event.get_attributes().items()
                if value is not None}
        check_wire(case, mode, message, sent, data)

        headers = dict(message.headers)
        if "subject" in sent and mode == "binary":
            expected = spec_percent_encode(sent["subject"])
            if headers.get("ce-subject") != expected:
                # Only reached with an SDK that does not percent-encode (not 2.2.0): fix the
                # header after the SDK so the request still follows section 3.1.3.2.
                print(f"post_with_sdk.py: {case}: SDK sent ce-subject "
                      f"{headers.get('ce-subject')!r}, expected {expected!r}; re-encoded it",
                      file=sys.stderr)
                headers["ce-subject"] = expected

        sent_headers, status, response = post(url, headers, message.body)
        results.append({
            "case": case,
            "mode": mode,
            "specversion": sent["specversion"],
            "status": status,
            "response": response,
            "sent": sent,
            "data": data,
            "headers": sent_headers,
        })

    json.dump(results, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
