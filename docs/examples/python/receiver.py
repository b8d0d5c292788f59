"""A Hookline webhook receiver in Flask.

Verifies both signatures Hookline sends:

* X-Webhook-Signature: hex HMAC-SHA256 of the raw body, keyed with the
  endpoint secret (the whole `whsec_...` string) as UTF-8;
* webhook-signature (Standard Webhooks): base64 HMAC-SHA256 of
  "{webhook-id}.{webhook-timestamp}.{body}", keyed with the base64-decoded
  part of the secret after `whsec_`, checked together with the timestamp's age
  to refuse replays.

Deliveries are at least once: the same X-Webhook-Delivery-Id may arrive more
than once, so processing is keyed on it.

    WEBHOOK_SECRET=whsec_... PORT=3000 python receiver.py
"""

import base64
import hashlib
import hmac
import os
import time

from flask import Flask, jsonify, request

app = Flask(__name__)
SECRET = os.environ["WEBHOOK_SECRET"]
TOLERANCE_SECONDS = 5 * 60

seen = {}  # delivery id -> event; use Redis or your database in production


def valid_hex_signature(raw: bytes, header: str) -> bool:
    expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header, expected)


def valid_standard_signature(raw: bytes) -> bool:
    msg_id = request.headers.get("webhook-id", "")
    timestamp = request.headers.get("webhook-timestamp", "")
    signatures = request.headers.get("webhook-signature", "")
    if not (msg_id and timestamp.isdigit() and signatures):
        return False
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    key = base64.b64decode(SECRET[len("whsec_"):])
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + raw
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    # During a secret rotation the header holds one "v1,..." entry per secret.
    return any(
        hmac.compare_digest(entry.split(",", 1)[1], expected)
        for entry in signatures.split(" ")
        if entry.startswith("v1,")
    )


@app.post("/webhook")
def webhook():
    raw = request.get_data()  # the raw bytes: verify before parsing
    signature = request.headers.get("X-Webhook-Signature")
    if not signature:
        return jsonify(error="missing signature"), 401
    if not valid_hex_signature(raw, signature) or not valid_standard_signature(raw):
        return jsonify(error="invalid signature"), 401

    delivery_id = request.headers["X-Webhook-Delivery-Id"]
    if delivery_id not in seen:
        event = request.get_json()
        seen[delivery_id] = event
        # Hand the event to a queue here; answer quickly.
    return jsonify(status="received"), 200


@app.get("/received")
def received():
    return jsonify([{"delivery_id": k, "event": v["event"]} for k, v in seen.items()])


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "3000")))
