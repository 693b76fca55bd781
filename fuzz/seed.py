"""Writes the seed corpus of a fuzz target from the project's fixtures (never committed).

http_binding: every HTTP request of the CloudEvents conformance features, with each
<placeholder> filled from its Examples table, plus a structured and a batch request.
rules: the example rules file, alone and followed by a structured event.
signature: webhook-id, webhook-timestamp, webhook-signature and a body, one per line.
"""
import hashlib
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FEATURE = ROOT / "tests/fixtures/cloudevents-conformance/features/http-protocol-binding.feature"
RULES = ROOT / "config/rules.example.yaml"


def feature_requests():
    """The feature's requests, placeholders expanded from the scenario's Examples rows."""
    text = FEATURE.read_text()
    for scenario in re.split(r"\n\s*Scenario", text)[1:]:
        blocks = re.findall(r'"""\n(.*?)\n\s*"""', scenario, re.S)
        if not blocks or not blocks[0].lstrip().startswith("POST"):
            continue
        request = "\n".join(line.strip() for line in blocks[0].splitlines())
        rows = []
        if "Examples:" in scenario:
            table = [
                [cell.strip() for cell in line.strip().strip("|").split("|")]
                for line in scenario.split("Examples:")[1].splitlines()
                if line.strip().startswith("|")
            ]
            rows = [dict(zip(table[0], row)) for row in table[1:]]
        for row in rows or [{}]:
            expanded = request
            for key, value in row.items():
                expanded = expanded.replace(f"<{key}>", value)
            yield expanded.encode()


STRUCTURED = json.dumps({
    "specversion": "1.0", "id": "s-1", "source": "//billing.acme.example",
    "type": "com.acme.tenant.lifecycle.upsert", "subject": "acme",
    "time": "2025-01-02T03:04:05Z", "data": {"plan": "gold"},
})


def extra_requests():
    yield (b"POST /events HTTP/1.1\nContent-Type: application/cloudevents+json\n\n"
           + STRUCTURED.encode())
    # A float past 64-bit integers in binary-mode JSON data: found by this target when
    # serde_json parsed floats inexactly (the structured round trip changed its last digit).
    yield (b"POST /events HTTP/1.1\nce-specversion: 1.0\nce-id: f-1\nce-source: /src\n"
           b"ce-type: com.acme.tenant.lifecycle.upsert\nContent-Type: application/json\n\n"
           b"111111000006371555158481727944")
    yield (b"POST /events HTTP/1.1\nContent-Type: application/cloudevents-batch+json\n\n["
           + STRUCTURED.encode() + b"," + STRUCTURED.replace('"s-1"', '"s-2"').encode() + b"]")


def main():
    target, corpus = sys.argv[1], pathlib.Path(sys.argv[2])
    requests = list(feature_requests()) + list(extra_requests())
    if target == "http_binding":
        seeds = requests
    elif target == "signature":
        seeds = [b"msg_1\n1767225600\nv1,AAAA\n" + STRUCTURED.encode(),
                 b"msg_2\n1767225500\nv1,Zm9v v2,YmFy\n{}"]
    elif target == "rules":
        rules = RULES.read_bytes()
        seeds = [rules, rules + b"\n---event---\n" + STRUCTURED.encode()]
    else:
        sys.exit(f"seed.py: unknown target {target}")
    for seed in seeds:
        (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    print(f"seed.py: {len(seeds)} seeds for {target} in {corpus}")


main()
