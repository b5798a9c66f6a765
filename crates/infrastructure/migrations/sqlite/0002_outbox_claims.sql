-- Several instances dispatch the outbox: a message is claimed (until this
-- instant, in Unix milliseconds) before it is sent, so two instances never
-- send it at the same time. A claim left by a crashed instance expires.
ALTER TABLE outbox ADD COLUMN claimed_until_ms INTEGER;
