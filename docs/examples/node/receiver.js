// A Hookline webhook receiver in Express.
//
// Verifies both signatures Hookline sends:
// - X-Webhook-Signature: hex HMAC-SHA256 of the raw body, keyed with the
//   endpoint secret (the whole `whsec_...` string);
// - webhook-signature (Standard Webhooks): base64 HMAC-SHA256 of
//   "{webhook-id}.{webhook-timestamp}.{body}", keyed with the base64-decoded
//   part of the secret after `whsec_`, with the timestamp's age checked.
//
// Deliveries are at least once: key your processing on X-Webhook-Delivery-Id.
//
//   WEBHOOK_SECRET=whsec_... PORT=3000 node receiver.js

const crypto = require('crypto');
const express = require('express');

const SECRET = process.env.WEBHOOK_SECRET;
const TOLERANCE_SECONDS = 5 * 60;
const seen = new Map(); // delivery id -> event; use Redis or your database in production

function safeEqual(a, b) {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

function validHexSignature(raw, header) {
  const expected = crypto.createHmac('sha256', SECRET).update(raw).digest('hex');
  return safeEqual(header, expected);
}

function validStandardSignature(req, raw) {
  const id = req.get('webhook-id');
  const timestamp = req.get('webhook-timestamp');
  const signatures = req.get('webhook-signature');
  if (!id || !/^\d+$/.test(timestamp || '') || !signatures) return false;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) return false;
  const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
  const expected = crypto
    .createHmac('sha256', key)
    .update(Buffer.concat([Buffer.from(`${id}.${timestamp}.`), raw]))
    .digest('base64');
  // During a secret rotation the header holds one "v1,..." entry per secret.
  return signatures
    .split(' ')
    .filter((s) => s.startsWith('v1,'))
    .some((s) => safeEqual(s.slice(3), expected));
}

const app = express();

app.post('/webhook', express.raw({ type: 'application/json' }), (req, res) => {
  const signature = req.get('x-webhook-signature');
  if (!signature) return res.status(401).json({ error: 'missing signature' });
  if (!validHexSignature(req.body, signature) || !validStandardSignature(req, req.body)) {
    return res.status(401).json({ error: 'invalid signature' });
  }
  const deliveryId = req.get('x-webhook-delivery-id');
  if (!seen.has(deliveryId)) {
    seen.set(deliveryId, JSON.parse(req.body));
    // Hand the event to a queue here; answer quickly.
  }
  res.status(200).json({ status: 'received' });
});

app.get('/received', (req, res) => {
  res.json([...seen].map(([id, event]) => ({ delivery_id: id, event: event.event })));
});

app.listen(Number(process.env.PORT || 3000), '127.0.0.1');
