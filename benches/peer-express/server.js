// The seed guide's Express receiver, the ingest benchmark's peer (benches/ingest starts it on the
// same PostgreSQL as the service, with the same load). Written as the guide writes it:
// express.raw, the HMAC compared with crypto.timingSafeEqual, the event stored with
// INSERT ... ON CONFLICT (event_id) DO NOTHING, 200, then the transaction upserted in
// setImmediate, on a pg pool of 10. Not part of the product: it is the baseline we measure against.
import crypto from 'node:crypto';
import express from 'express';
import pg from 'pg';

const secret = process.env.FLUID_WEBHOOK_SECRET;
if (!secret || !process.env.DATABASE_URL) {
  console.error('set FLUID_WEBHOOK_SECRET and DATABASE_URL');
  process.exit(2);
}
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
await pool.query(`CREATE TABLE IF NOT EXISTS peer_events (
  event_id text PRIMARY KEY, payload jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now())`);
await pool.query(`CREATE TABLE IF NOT EXISTS peer_transactions (
  reference text PRIMARY KEY, status text NOT NULL, amount numeric, updated_at timestamptz NOT NULL DEFAULT now())`);

const app = express();
app.use('/webhooks', express.raw({ type: 'application/json', limit: '1mb' }));

app.post('/webhooks/fluid', async (req, res) => {
  const given = Buffer.from(String(req.headers['x-fluid-signature'] ?? ''), 'hex');
  const expected = crypto.createHmac('sha256', secret).update(req.body).digest();
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
    return res.status(401).json({ error: 'invalid signature' });
  }
  let event;
  try {
    event = JSON.parse(req.body.toString('utf8'));
  } catch {
    return res.status(400).json({ error: 'invalid JSON' });
  }
  try {
    await pool.query(
      'INSERT INTO peer_events (event_id, payload) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING',
      [event.event_id, req.body.toString('utf8')],
    );
  } catch (error) {
    return res.status(503).json({ error: 'database unavailable' });
  }
  res.status(200).json({ received: true });
  setImmediate(() => apply(event).catch((error) => console.error('apply failed:', error.message)));
});

async function apply(event) {
  const t = event.data?.transaction ?? {};
  await pool.query(
    `INSERT INTO peer_transactions (reference, status, amount) VALUES ($1, $2, $3)
     ON CONFLICT (reference) DO UPDATE SET status = EXCLUDED.status, amount = EXCLUDED.amount,
       updated_at = now()`,
    [t.reference, t.status, t.amount],
  );
}

const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  console.log(JSON.stringify({ address: `127.0.0.1:${server.address().port}` }));
});
process.on('SIGTERM', () => server.close(() => pool.end().then(() => process.exit(0))));
