-- kessai's schema on SQLite. Money is INTEGER minor units (JPY: yen), never REAL.
-- Timestamps are RFC 3339 text in UTC as sqlx writes them.

CREATE TABLE users (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    email              TEXT    NOT NULL UNIQUE,       -- normalised (trimmed, lower case)
    name               TEXT,
    password_hash      TEXT    NOT NULL,              -- PHC string, names its own scheme
    stripe_customer_id TEXT    UNIQUE,                -- one Stripe Customer per user, at most
    created_at         TEXT    NOT NULL
);

-- An access token names a session; deleting or revoking the row ends the login.
CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT    NOT NULL,
    expires_at TEXT    NOT NULL,
    revoked_at TEXT
);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE products (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    sku        TEXT    NOT NULL UNIQUE,               -- catalog key for upserts
    name       TEXT    NOT NULL,
    price      INTEGER NOT NULL CHECK (price >= 0),   -- excluding tax
    currency   TEXT    NOT NULL,
    active     BOOLEAN NOT NULL DEFAULT TRUE,
    updated_at TEXT    NOT NULL
);

-- Hands out the per-day sequence of order numbers (ACQ-YYMMDD-NNN) with one
-- atomic upsert, so concurrent orders never compute the same number.
CREATE TABLE order_number_counters (
    day        TEXT    PRIMARY KEY,                   -- YYMMDD in shop time
    last_value INTEGER NOT NULL
);

CREATE TABLE orders (
    id                         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id                    INTEGER NOT NULL REFERENCES users (id),
    order_number               TEXT    NOT NULL UNIQUE,
    status                     TEXT    NOT NULL CHECK (status IN
                                   ('pending', 'awaiting_payment', 'paid', 'refunded', 'cancelled')),
    currency                   TEXT    NOT NULL,
    subtotal                   INTEGER NOT NULL CHECK (subtotal >= 0),
    tax                        INTEGER NOT NULL CHECK (tax >= 0),
    shipping_fee               INTEGER NOT NULL CHECK (shipping_fee >= 0),
    total                      INTEGER NOT NULL CHECK (total = subtotal + tax + shipping_fee),
    notes                      TEXT,
    payment_intent_id          TEXT    UNIQUE,        -- the order's current PaymentIntent
    payment_attempts           INTEGER NOT NULL DEFAULT 0, -- PaymentIntents created so far (idempotency keys)
    paid_at                    TEXT,
    cancelled_at               TEXT,
    cancel_reason              TEXT,
    refunded_amount            INTEGER NOT NULL DEFAULT 0 CHECK (refunded_amount BETWEEN 0 AND total),
    last_payment_error_code    TEXT,
    last_payment_error_message TEXT,
    version                    INTEGER NOT NULL DEFAULT 0, -- bumped by every state save (optimistic lock)
    -- Who may create this order's PaymentIntent right now, and until when
    -- (unix ms). A lease, not a transaction: no lock is held across the
    -- call to Stripe, and a crashed holder's lease simply runs out.
    intent_lease_owner         TEXT,
    intent_lease_until_ms      INTEGER NOT NULL DEFAULT 0,
    -- Reconciliation schedule: when to ask Stripe next about an order that
    -- awaits payment without news, and how many times we already asked.
    next_check_at_ms           INTEGER NOT NULL DEFAULT 0,
    reconcile_checks           INTEGER NOT NULL DEFAULT 0,
    created_at                 TEXT    NOT NULL,
    updated_at                 TEXT    NOT NULL
);
CREATE INDEX orders_user_id ON orders (user_id, id);
CREATE INDEX orders_awaiting ON orders (next_check_at_ms) WHERE status = 'awaiting_payment';

CREATE TABLE order_items (
    order_id     INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no      INTEGER NOT NULL,
    product_id   INTEGER NOT NULL REFERENCES products (id),
    product_name TEXT    NOT NULL,                    -- snapshot at order time
    unit_price   INTEGER NOT NULL CHECK (unit_price >= 0),
    quantity     INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 999),
    subtotal     INTEGER NOT NULL CHECK (subtotal = unit_price * quantity),
    PRIMARY KEY (order_id, line_no)
);

-- Every event Stripe delivered, once. The primary key makes processing
-- exactly-once: the row is inserted in the same transaction as the change
-- the event causes, so a duplicate delivery (even a concurrent one, on
-- another instance) finds it and changes nothing.
CREATE TABLE webhook_events (
    id                TEXT    PRIMARY KEY,            -- Stripe's evt_…
    type              TEXT    NOT NULL,
    created           INTEGER  NOT NULL,                 -- Stripe's timestamp, unix seconds
    received_at       TEXT    NOT NULL,
    outcome           TEXT    NOT NULL,               -- applied, ignored, mismatch, foreign, review
    detail            TEXT,
    order_id          INTEGER  REFERENCES orders (id),
    payment_intent_id TEXT,
    payload           TEXT    NOT NULL                -- the verified body, for replay
);
CREATE INDEX webhook_events_order_id ON webhook_events (order_id);

-- Work that must follow a committed change but is too slow (or too
-- fallible) to do inside a webhook request: notifications. Written in the
-- same transaction as the change, dispatched after commit.
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    topic         TEXT    NOT NULL,                   -- e.g. order_paid
    order_id      INTEGER  NOT NULL REFERENCES orders (id),
    created_at    TEXT    NOT NULL,
    attempts      INTEGER  NOT NULL DEFAULT 0,
    dispatched_at TEXT
);
CREATE INDEX outbox_pending ON outbox (id) WHERE dispatched_at IS NULL;
