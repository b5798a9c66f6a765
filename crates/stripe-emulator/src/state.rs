//! Everything the emulator remembers, behind one mutex: objects, events,
//! idempotency results, the webhook queue, and the current faults. No lock
//! is ever held across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};

use crate::idempotency::IdempotencyStore;
use crate::objects::{Charge, Customer, PaymentIntent, PaymentMethod, Refund};
use crate::{ids, Faults, API_VERSION};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// The secret key: everything.
    SecretKey,
    /// A PaymentIntent's client secret, as Stripe.js presents it: only that
    /// intent, only retrieve and confirm, and its public fields.
    ClientSecret { intent: String },
}

impl Caller {
    /// Idempotency keys are per API key.
    pub fn scope(&self) -> String {
        match self {
            Self::SecretKey => "secret_key".to_string(),
            Self::ClientSecret { intent } => format!("client_secret:{intent}"),
        }
    }
}

/// The `request` of an event: the API request that caused it, or nulls
/// for changes Stripe makes on its own (a delayed payment settling).
#[derive(Debug, Clone, Default)]
pub(crate) struct EventRequest {
    pub id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// One API call in progress.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub now: i64,
    pub caller: Caller,
    pub request: EventRequest,
    /// Intents that went to `processing` and settle after the delay.
    pub settle_later: Vec<String>,
}

impl Ctx {
    pub fn new(caller: Caller, request: EventRequest) -> Self {
        Self {
            now: chrono::Utc::now().timestamp(),
            caller,
            request,
            settle_later: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub id: String,
    pub kind: String,
    pub value: Value,
    /// Deliveries still queued or being retried.
    pub outstanding: u32,
}

impl StoredEvent {
    /// The event as the API and webhooks show it now.
    pub fn to_json(&self) -> Value {
        let mut value = self.value.clone();
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "pending_webhooks".into(),
                json!(u32::from(self.outstanding > 0)),
            );
        }
        value
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub event_id: String,
    /// Attempts made so far.
    pub attempts: u32,
    pub due: Instant,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct DeliveryStats {
    /// Attempts answered 2xx.
    pub delivered: u64,
    /// Attempts that failed, for either reason below.
    pub failed_attempts: u64,
    /// Failed attempts the endpoint answered with a non-2xx status.
    pub refused: u64,
    /// Failed attempts with no answer (connection refused or broken,
    /// timeout): the endpoint was down or died mid-request.
    pub unreachable: u64,
    pub given_up: u64,
    pub dropped: u64,
    pub duplicated: u64,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub faults: Faults,
    pub webhook_url: Option<String>,
    pub customers: HashMap<String, Customer>,
    pub intents: HashMap<String, PaymentIntent>,
    pub charges: HashMap<String, Charge>,
    pub refunds: HashMap<String, Refund>,
    pub payment_methods: HashMap<String, PaymentMethod>,
    pub events: Vec<StoredEvent>,
    pub event_index: HashMap<String, usize>,
    pub idempotency: IdempotencyStore,
    pub deliveries: VecDeque<Delivery>,
    pub stats: DeliveryStats,
}

/// `true` with probability `rate` (0 never, 1 always).
pub(crate) fn roll(rate: f64) -> bool {
    if rate.is_nan() || rate <= 0.0 {
        false
    } else if rate >= 1.0 {
        true
    } else {
        rand::thread_rng().gen::<f64>() < rate
    }
}

impl State {
    pub fn new(faults: Faults, webhook_url: Option<String>) -> Self {
        Self {
            faults,
            webhook_url,
            ..Self::default()
        }
    }

    /// Records an event and queues its delivery (subject to the faults).
    pub fn emit(
        &mut self,
        kind: &str,
        object: Value,
        previous_attributes: Option<Value>,
        request: &EventRequest,
        now: i64,
    ) -> String {
        let id = ids::object_id("evt");
        let mut data = json!({ "object": object });
        if let (Some(previous), Some(map)) = (previous_attributes, data.as_object_mut()) {
            map.insert("previous_attributes".into(), previous);
        }
        let value = json!({
            "id": id,
            "object": "event",
            "api_version": API_VERSION,
            "created": now,
            "data": data,
            "livemode": false,
            "pending_webhooks": 0,
            "request": { "id": request.id, "idempotency_key": request.idempotency_key },
            "type": kind
        });
        let mut outstanding = 0;
        if self.faults.webhooks_enabled && self.webhook_url.is_some() {
            if roll(self.faults.webhook_drop_rate) {
                self.stats.dropped += 1;
                tracing::debug!(event = %id, kind, "webhook dropped (fault)");
            } else {
                let copies = if roll(self.faults.webhook_duplicate_rate) {
                    self.stats.duplicated += 1;
                    2
                } else {
                    1
                };
                let delay = Duration::from_millis(self.faults.webhook_delay_ms);
                for _ in 0..copies {
                    let jitter = if self.faults.webhook_reorder {
                        let window = self.faults.webhook_delay_ms.max(250);
                        Duration::from_millis(rand::thread_rng().gen_range(0..=window))
                    } else {
                        Duration::ZERO
                    };
                    self.deliveries.push_back(Delivery {
                        event_id: id.clone(),
                        attempts: 0,
                        due: Instant::now() + delay + jitter,
                    });
                }
                outstanding = copies;
            }
        }
        self.event_index.insert(id.clone(), self.events.len());
        self.events.push(StoredEvent {
            id: id.clone(),
            kind: kind.to_string(),
            value,
            outstanding,
        });
        id
    }

    pub fn event(&self, id: &str) -> Option<&StoredEvent> {
        self.event_index.get(id).and_then(|i| self.events.get(*i))
    }

    pub fn event_mut(&mut self, id: &str) -> Option<&mut StoredEvent> {
        let index = *self.event_index.get(id)?;
        self.events.get_mut(index)
    }
}
