-- What answered and what it cost: the public model that served the job (after fallback), the
-- backend (operator-facing, never shown to tenants) and the cost from the price table.
ALTER TABLE jobs ADD COLUMN served_model text;
ALTER TABLE jobs ADD COLUMN backend_id text;
ALTER TABLE jobs ADD COLUMN cost_usd numeric(14, 6);
