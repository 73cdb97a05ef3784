#!/usr/bin/env python3
"""Regenerates fuzz/seeds/<target>/ from tests/fixtures/ (run from anywhere).

Seeds are small committed copies (never symlinks). The byte layouts are the ones each
fuzz target documents at its top; keep the two in sync. Standard library only.
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import struct
import sys
import urllib.parse

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
FIX = os.path.join(ROOT, "tests", "fixtures")
SEEDS = os.path.join(FUZZ, "seeds")

# Must match fuzz/src/jwt.rs.
APP = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
API_KEY = "a1b2c3d"
SECRET = b"fuzz-secret-0123456789"
NOW = 1_587_494_962
MAGIC = b"CHSPOOL\x01"


def fixture(name):
    with open(os.path.join(FIX, name), "rb") as f:
        return f.read()


def fixtures(suffix=".json"):
    return sorted(n for n in os.listdir(FIX) if n.endswith(suffix))


def out(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def query_of(obj):
    """Like src/ncco/tests::fixture_query: strings as they are, other values as JSON."""
    parts = []
    for k, v in obj.items():
        v = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        parts.append(urllib.parse.quote(k, safe="") + "=" + urllib.parse.quote(v, safe=""))
    return "&".join(parts)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(claims):
    head = b64(b'{"alg":"HS256","typ":"JWT"}')
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(SECRET, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def get_hash(query):
    # First position, last value of a repeated key (a dict does exactly that).
    params = {}
    for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
        params[k] = v
    text = json.dumps(params, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def claims(jti, payload_hash):
    return {
        "iat": NOW,
        "jti": jti,
        "iss": "Vonage",
        "payload_hash": payload_hash,
        "api_key": API_KEY,
        "application_id": APP,
    }


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def record(seq, kind, is_query, received_us, key, app, etype, meta, body):
    """src/spool/record.rs layout."""
    rest = struct.pack(
        "<QqBBHHHII", seq, received_us, kind, 1 if is_query else 0,
        len(key), len(app), len(etype), len(meta), len(body),
    ) + key + app + etype + meta + body
    return struct.pack("<II", len(rest), crc32c(rest)) + rest


def main():
    if os.path.isdir(SEEDS):
        shutil.rmtree(SEEDS)
    bodies = [n for n in fixtures() if not n.endswith("-get-query.json")
              and not n.endswith("answer-query.json") and n != "jwt-signed-webhook-claims.json"]
    query_fixtures = [n for n in fixtures() if n.endswith("-get-query.json")
                      or n.endswith("answer-query.json")]
    queries = {n: query_of(json.loads(fixture(n))) for n in query_fixtures}
    queries["custom-data"] = ("to=447700900000&from_user=Alice&endpoint_type=app&custom_data="
                              + urllib.parse.quote('{"note":"AT&T <b>","user":"bob","n":5,"tier":"gold"}', safe=""))

    # inspect_body: every JSON fixture (objects, and NCCO arrays as negatives).
    for n in bodies:
        out("inspect_body", n, fixture(n))

    # query: the GET fixtures as query strings.
    for n, q in queries.items():
        out("query", n.replace(".json", ".txt"), q)

    # verify_jwt: valid POST and GET tokens (raw modes), and a few structured inputs.
    for i, n in enumerate(["seed-inbound-completed.json", "messages-status-delivered.json",
                           "rtc-member-joined.json"]):
        body = fixture(n)
        tok = mint(claims(f"seed-post-{i}", hashlib.sha256(body).hexdigest()))
        out("verify_jwt", f"post-{n}", b"\x00Bearer " + tok.encode() + b"\n" + body)
    for i, (n, q) in enumerate(sorted(queries.items())[:3]):
        tok = mint(claims(f"seed-get-{i}", get_hash(q)))
        out("verify_jwt", f"get-{i}", b"\x80Bearer " + tok.encode() + b"\n" + q.encode())
    for i in range(4):
        out("verify_jwt", f"structured-{i}", bytes([0xC0 + i]) + hashlib.sha256(bytes([i])).digest() * 4)

    # ncco_template: fixed plan with fixture queries; fuzzed NCCOs; generated NCCOs.
    for n, q in queries.items():
        out("ncco_template", "fixed-" + n.replace(".json", ".txt"), b"\x00" + q.encode())
    nccos = [fixture("ncco-phone-to-app.json"), fixture("ncco-ivr-input.json"),
             json.dumps([{"action": "talk", "text": "<speak>Hi {{from_user}}</speak>"},
                         {"action": "connect", "from": "{{from}}",
                          "endpoint": [{"type": "phone", "number": "{{to}}"}]}]).encode(),
             json.dumps([{"action": "conversation", "name": "{{conversation_uuid}}",
                          "canSpeak": ["{{uuid}}"]}]).encode()]
    q = queries["custom-data"].encode()
    for i, ncco in enumerate(nccos):
        out("ncco_template", f"json-{i}", b"\x80" + ncco + b"\x00" + q)
    for i in range(4):
        out("ncco_template", f"generated-{i}", bytes([0xC0 + i]) + hashlib.sha256(bytes([i])).digest() * 3 + b"\x00" + q)

    # spool_record: encoded records (raw mode), a few structured inputs.
    recs = []
    for i, n in enumerate(["voice-event-completed.json", "messages-inbound-sms.json"]):
        recs.append(record(i, 3 + i, False, 1_700_000_000_000_000 + i, b"CON-1", APP.encode(),
                           b"completed", b"", fixture(n)))
    recs.append(record(2, 1, True, 1_700_000_000_000_002, b"CON-2", b"", b"answer",
                       queries["voice-answer-get-query.json"].encode(), b""))
    for i, r in enumerate(recs):
        out("spool_record", f"record-{i}", b"\x00" + r)
    out("spool_record", "record-empty", b"\x00" + record(0, 0, False, 0, b"", b"", b"", b"", b""))
    for i in range(3):
        out("spool_record", f"structured-{i}", bytes([0x80 + i]) + hashlib.sha256(bytes([i])).digest() * 8)

    # segment_reader: whole segments (flag 1 adds the magic), torn tails, other first seqs.
    seg = b"".join(recs)
    out("segment_reader", "three-records", b"\x01" + seg)
    out("segment_reader", "with-magic", b"\x00" + MAGIC + seg)
    out("segment_reader", "torn-tail", b"\x01" + seg[:-7])
    out("segment_reader", "zero-fill", b"\x01" + recs[0] + b"\x00" * 64)
    out("segment_reader", "empty", b"\x01")
    out("segment_reader", "not-a-segment", b"\x00" + b"hello, not a spool file")
    seg41 = b"".join(record(41 + i, 3, False, 0, b"k", b"", b"e", b"", b"{}") for i in range(2))
    out("segment_reader", "first-41", bytes([0x01 | (2 << 1)]) + seg41)

    # config: the example and fixture configs, and one with applications.
    with open(os.path.join(ROOT, "deploy", "config", "callhook.toml"), "rb") as f:
        out("config", "callhook.toml", f.read())
    out("config", "seed-rules.toml", fixture("seed-rules.toml"))
    out("config", "applications.toml", """
[signatures]
max_skew_secs = 120
replay_cache_entries = 5000

[[applications]]
id = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
name = "support-line"
api_key = "a1b2c3d"
signature_secrets = ["new-secret", "old-secret"]
capabilities = ["voice", "messages", "rtc"]
signatures = "report"
get_hash = "enforce"
legacy_sig = { algorithm = "md5hash", secret = "legacy" }

[[answer.rules]]
name = "scoped"
application_id = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
match = { to_prefix = ["44", "1"], custom = { tier = "gold" } }
upstream = "http://127.0.0.1:9000/answer"
deadline_ms = 1500
fallback = [{ action = "talk", text = "Sorry {{from_user}}", level = 0.5 }]

[spool]
retention_hours = 24
retention_bytes = 1073741824

[kafka]
brokers = "localhost:9092"
compression = "lz4"
properties = { "client.id" = "callhook" }
""")
    n = sum(len(fs) for _, _, fs in os.walk(SEEDS))
    print(f"wrote {n} seeds under {os.path.relpath(SEEDS, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
