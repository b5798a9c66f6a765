//! The `/v1` operations. Each one first takes and validates its parameters
//! (unknown ones are a `parameter_unknown` error; nothing is saved for an
//! idempotency key), then executes against the state.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::cards::{self, Behavior};
use crate::error::ApiError;
use crate::form::Params;
use crate::ids;
use crate::money;
use crate::objects::{
    Charge, ChargeStatus, Customer, IntentStatus, PaymentError, PaymentIntent, PaymentMethod,
    Refund,
};
use crate::state::{Caller, Ctx, EventRequest, State};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    CreateCustomer,
    RetrieveCustomer(String),
    CreateIntent,
    RetrieveIntent(String),
    UpdateIntent(String),
    ConfirmIntent(String),
    CancelIntent(String),
    CaptureIntent(String),
    RetrieveCharge(String),
    CreateRefund,
    RetrieveRefund(String),
    RetrievePaymentMethod(String),
    ListEvents,
    RetrieveEvent(String),
}

impl Op {
    /// The intent a client secret may act on through this operation.
    pub fn client_secret_intent(&self) -> Option<&str> {
        match self {
            Self::RetrieveIntent(id) | Self::ConfirmIntent(id) => Some(id),
            _ => None,
        }
    }
}

const INTENT_EXPAND: &[&str] = &["latest_charge", "customer", "payment_method"];
const INTENT_OPEN_STATUSES: &str =
    "requires_payment_method, requires_confirmation, requires_action";
const CANCELABLE_STATUSES: &str =
    "requires_payment_method, requires_capture, requires_confirmation, requires_action";
const CLIENT_SECRET_MISMATCH: &str = "The client_secret provided does not match any associated PaymentIntent on this account. Ensure the publishable key used belongs to the same account that created the PaymentIntent.";

pub(crate) fn client_secret_mismatch() -> ApiError {
    ApiError::validation(CLIENT_SECRET_MISMATCH)
        .code("payment_intent_invalid_parameter")
        .param("client_secret")
}

fn looks_like_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 512
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn email_param(p: &mut Params, key: &str) -> Result<Option<Option<String>>, ApiError> {
    match p.nullable_string(key) {
        Some(Some(email)) if !looks_like_email(&email) => Err(ApiError::validation(format!(
            "Invalid email address: {email}"
        ))
        .code("email_invalid")
        .param(key)),
        other => Ok(other),
    }
}

impl State {
    pub fn execute(&mut self, op: &Op, p: &mut Params, ctx: &mut Ctx) -> Result<Value, ApiError> {
        match op {
            Op::CreateCustomer => self.create_customer(p, ctx),
            Op::RetrieveCustomer(id) => {
                p.expand(&[])?;
                p.finish()?;
                self.customers
                    .get(id)
                    .map(Customer::to_json)
                    .ok_or_else(|| ApiError::not_found("customer", id, "id"))
            }
            Op::CreateIntent => self.create_intent(p, ctx),
            Op::RetrieveIntent(id) => {
                let expand = p.expand(INTENT_EXPAND)?;
                let secret = p.string("client_secret");
                p.finish()?;
                let intent = self
                    .intents
                    .get(id)
                    .ok_or_else(|| ApiError::not_found("payment_intent", id, "intent"))?;
                if let Some(secret) = secret {
                    if !crate::auth::secrets_match(&secret, &intent.client_secret) {
                        return Err(client_secret_mismatch());
                    }
                }
                Ok(self.intent_json(id, &expand, &ctx.caller))
            }
            Op::UpdateIntent(id) => self.update_intent(id, p, ctx),
            Op::ConfirmIntent(id) => self.confirm_intent(id, p, ctx),
            Op::CancelIntent(id) => self.cancel_intent(id, p, ctx),
            Op::CaptureIntent(id) => self.capture_intent(id, p, ctx),
            Op::RetrieveCharge(id) => {
                let expand = p.expand(&["refunds"])?;
                p.finish()?;
                let charge = self
                    .charges
                    .get(id)
                    .ok_or_else(|| ApiError::not_found("charge", id, "id"))?;
                Ok(self.charge_json(charge, !expand.is_empty()))
            }
            Op::CreateRefund => self.create_refund(p, ctx),
            Op::RetrieveRefund(id) => {
                p.expand(&[])?;
                p.finish()?;
                self.refunds
                    .get(id)
                    .map(Refund::to_json)
                    .ok_or_else(|| ApiError::not_found("refund", id, "id"))
            }
            Op::RetrievePaymentMethod(id) => {
                p.expand(&[])?;
                p.finish()?;
                self.payment_methods
                    .get(id)
                    .map(PaymentMethod::to_json)
                    .ok_or_else(|| ApiError::not_found("PaymentMethod", id, "payment_method"))
            }
            Op::ListEvents => self.list_events(p),
            Op::RetrieveEvent(id) => {
                p.expand(&[])?;
                p.finish()?;
                self.event(id)
                    .map(|e| e.to_json())
                    .ok_or_else(|| ApiError::not_found("event", id, "id"))
            }
        }
    }

    fn charge_json(&self, charge: &Charge, with_refunds: bool) -> Value {
        let refunds = with_refunds.then(|| {
            charge
                .refunds
                .iter()
                .rev()
                .filter_map(|id| self.refunds.get(id).map(Refund::to_json))
                .collect()
        });
        charge.to_json(refunds)
    }

    fn intent_json(&self, id: &str, expand: &[String], caller: &Caller) -> Value {
        let Some(intent) = self.intents.get(id) else {
            return Value::Null;
        };
        if matches!(caller, Caller::ClientSecret { .. }) {
            return intent.to_public_json();
        }
        let mut value = intent.to_json();
        let Some(map) = value.as_object_mut() else {
            return value;
        };
        for field in expand {
            let expanded = match field.as_str() {
                "latest_charge" => intent
                    .latest_charge
                    .as_ref()
                    .and_then(|c| self.charges.get(c))
                    .map(|c| self.charge_json(c, false)),
                "customer" => intent
                    .customer
                    .as_ref()
                    .and_then(|c| self.customers.get(c))
                    .map(Customer::to_json),
                "payment_method" => intent
                    .payment_method
                    .as_ref()
                    .and_then(|m| self.payment_methods.get(m))
                    .map(PaymentMethod::to_json),
                _ => continue,
            };
            map.insert(field.clone(), expanded.unwrap_or(Value::Null));
        }
        value
    }

    fn create_customer(&mut self, p: &mut Params, ctx: &mut Ctx) -> Result<Value, ApiError> {
        let email = email_param(p, "email")?.flatten();
        let name = p.nullable_string("name").flatten();
        let description = p.nullable_string("description").flatten();
        let phone = p.nullable_string("phone").flatten();
        let metadata = p.metadata("metadata")?;
        p.expand(&[])?;
        p.finish()?;
        let mut customer = Customer {
            id: ids::object_id("cus"),
            created: ctx.now,
            email,
            name,
            description,
            phone,
            metadata: BTreeMap::new(),
            invoice_prefix: ids::invoice_prefix(),
        };
        if let Some(update) = metadata {
            update.apply(&mut customer.metadata)?;
        }
        let json = customer.to_json();
        self.customers.insert(customer.id.clone(), customer);
        self.emit(
            "customer.created",
            json.clone(),
            None,
            &ctx.request,
            ctx.now,
        );
        Ok(json)
    }

    /// A PaymentMethod id or a test name (`pm_card_visa`) → a stored
    /// PaymentMethod id (a test name creates a new one each time).
    fn resolve_payment_method(&mut self, name: &str, now: i64) -> Result<String, ApiError> {
        if self.payment_methods.contains_key(name) {
            return Ok(name.to_string());
        }
        let Some((index, _)) = cards::by_name(name) else {
            return Err(ApiError::missing_reference(
                "PaymentMethod",
                name,
                "payment_method",
            ));
        };
        let method = PaymentMethod {
            id: ids::object_id("pm"),
            created: now,
            card: index,
            fingerprint: ids::fingerprint(),
            exp_year: i64::from(chrono::Datelike::year(&chrono::Utc::now())) + 3,
        };
        let id = method.id.clone();
        self.payment_methods.insert(id.clone(), method);
        Ok(id)
    }

    fn create_intent(&mut self, p: &mut Params, ctx: &mut Ctx) -> Result<Value, ApiError> {
        let amount = p
            .positive_integer("amount")?
            .ok_or_else(|| ApiError::missing_parameter("amount"))?;
        let currency = money::parse_currency(&p.required_string("currency")?)?;
        money::check_amount(amount, &currency)?;
        let customer = p.nullable_string("customer").flatten();
        let description = p.nullable_string("description").flatten();
        let receipt_email = email_param(p, "receipt_email")?.flatten();
        let metadata = p.metadata("metadata")?;
        let payment_method = p.nullable_string("payment_method").flatten();
        let confirm = p.boolean("confirm")?.unwrap_or(false);
        // Accepted and ignored beyond the shape (the default since 2023-08-16).
        let apm_enabled = p.boolean("automatic_payment_methods[enabled]")?;
        p.choice(
            "automatic_payment_methods[allow_redirects]",
            &["always", "never"],
        )?;
        let types = p.list("payment_method_types")?;
        let capture_method = p
            .choice(
                "capture_method",
                &["automatic", "automatic_async", "manual"],
            )?
            .flatten()
            .unwrap_or_else(|| "automatic_async".to_string());
        let return_url = p.nullable_string("return_url").flatten();
        let expand = p.expand(INTENT_EXPAND)?;
        p.finish()?;
        if apm_enabled == Some(true) && types.is_some() {
            return Err(ApiError::validation(
                "You may only specify one of these parameters: automatic_payment_methods, payment_method_types.",
            )
            .code("parameters_exclusive")
            .param("automatic_payment_methods"));
        }
        if return_url.is_some() && !confirm {
            return Err(
                ApiError::validation("You may only specify return_url when confirm=true.")
                    .param("return_url"),
            );
        }
        if let Some(customer) = &customer {
            if !self.customers.contains_key(customer) {
                return Err(ApiError::missing_reference(
                    "customer", customer, "customer",
                ));
            }
        }
        let payment_method = match payment_method {
            Some(name) => Some(self.resolve_payment_method(&name, ctx.now)?),
            None => None,
        };
        let automatic = types.is_none() && apm_enabled != Some(false);
        let mut intent = PaymentIntent {
            id: ids::object_id("pi"),
            client_secret: String::new(),
            created: ctx.now,
            amount,
            currency,
            status: if payment_method.is_some() {
                IntentStatus::RequiresConfirmation
            } else {
                IntentStatus::RequiresPaymentMethod
            },
            customer,
            description,
            receipt_email,
            metadata: BTreeMap::new(),
            payment_method,
            payment_method_types: types.unwrap_or_else(|| vec!["card".to_string()]),
            automatic_payment_methods: automatic,
            capture_method,
            amount_received: 0,
            amount_capturable: 0,
            canceled_at: None,
            cancellation_reason: None,
            latest_charge: None,
            last_payment_error: None,
            payment_method_configuration: ids::object_id("pmc"),
        };
        intent.client_secret = ids::client_secret(&intent.id);
        if let Some(update) = metadata {
            update.apply(&mut intent.metadata)?;
        }
        let id = intent.id.clone();
        let json = intent.to_json();
        self.intents.insert(id.clone(), intent);
        self.emit("payment_intent.created", json, None, &ctx.request, ctx.now);
        if confirm {
            self.confirm_existing(&id, ctx)?;
        }
        Ok(self.intent_json(&id, &expand, &ctx.caller))
    }

    fn intent(&self, id: &str) -> Result<&PaymentIntent, ApiError> {
        self.intents
            .get(id)
            .ok_or_else(|| ApiError::not_found("payment_intent", id, "intent"))
    }

    fn intent_mut(&mut self, id: &str) -> Result<&mut PaymentIntent, ApiError> {
        self.intents
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found("payment_intent", id, "intent"))
    }

    fn update_intent(
        &mut self,
        id: &str,
        p: &mut Params,
        ctx: &mut Ctx,
    ) -> Result<Value, ApiError> {
        let amount = p.positive_integer("amount")?;
        let currency = match p.string("currency") {
            Some(c) => Some(money::parse_currency(&c)?),
            None => None,
        };
        let customer = p.nullable_string("customer");
        let description = p.nullable_string("description");
        let receipt_email = email_param(p, "receipt_email")?;
        let metadata = p.metadata("metadata")?;
        let payment_method = p.nullable_string("payment_method");
        let capture_method = p.choice(
            "capture_method",
            &["automatic", "automatic_async", "manual"],
        )?;
        let expand = p.expand(INTENT_EXPAND)?;
        p.finish()?;

        let intent = self.intent(id)?;
        let status = intent.status;
        // Amount, currency, customer and payment method only while the
        // intent is open; metadata, description and receipt_email always.
        let restricted = [
            ("amount", amount.is_some()),
            ("currency", currency.is_some()),
            ("customer", customer.is_some()),
            ("payment_method", payment_method.is_some()),
            ("capture_method", capture_method.is_some()),
        ];
        if let Some((field, _)) = restricted.iter().find(|(_, given)| *given) {
            if !status.is_open() {
                return Err(ApiError::unexpected_state(format!(
                    "This PaymentIntent's {field} could not be updated because it has a status of {}. You may only update the {field} of a PaymentIntent with one of the following statuses: {INTENT_OPEN_STATUSES}.",
                    status.as_str()
                ))
                .param(field));
            }
        }
        let new_currency = currency.clone().unwrap_or_else(|| intent.currency.clone());
        if amount.is_some() || currency.is_some() {
            money::check_amount(amount.unwrap_or(intent.amount), &new_currency)?;
        }
        if let Some(Some(customer)) = &customer {
            if !self.customers.contains_key(customer) {
                return Err(ApiError::missing_reference(
                    "customer", customer, "customer",
                ));
            }
        }
        let metadata = match metadata {
            Some(update) => {
                let mut next = intent.metadata.clone();
                update.apply(&mut next)?;
                Some(next)
            }
            None => None,
        };
        let payment_method = match payment_method {
            Some(Some(name)) => Some(Some(self.resolve_payment_method(&name, ctx.now)?)),
            other => other,
        };
        let intent = self.intent_mut(id)?;
        if let Some(amount) = amount {
            intent.amount = amount;
        }
        intent.currency = new_currency;
        if let Some(customer) = customer {
            intent.customer = customer;
        }
        if let Some(description) = description {
            intent.description = description;
        }
        if let Some(receipt_email) = receipt_email {
            intent.receipt_email = receipt_email;
        }
        if let Some(Some(capture_method)) = capture_method {
            intent.capture_method = capture_method;
        }
        if let Some(metadata) = metadata {
            intent.metadata = metadata;
        }
        if let Some(payment_method) = payment_method {
            intent.status = if payment_method.is_some() {
                IntentStatus::RequiresConfirmation
            } else {
                IntentStatus::RequiresPaymentMethod
            };
            intent.payment_method = payment_method;
        }
        // Stripe has no `payment_intent.updated` event.
        Ok(self.intent_json(id, &expand, &ctx.caller))
    }

    fn confirm_intent(
        &mut self,
        id: &str,
        p: &mut Params,
        ctx: &mut Ctx,
    ) -> Result<Value, ApiError> {
        let payment_method = p.nullable_string("payment_method").flatten();
        let secret = p.string("client_secret");
        p.nullable_string("return_url");
        p.boolean("use_stripe_sdk")?;
        let receipt_email = email_param(p, "receipt_email")?;
        let expand = p.expand(INTENT_EXPAND)?;
        p.finish()?;

        let intent = self.intent(id)?;
        if let Some(secret) = secret {
            if !crate::auth::secrets_match(&secret, &intent.client_secret) {
                return Err(client_secret_mismatch());
            }
        }
        match intent.status {
            status if status.is_open() => {}
            IntentStatus::Succeeded => {
                return Err(ApiError::unexpected_state(
                    "You cannot confirm this PaymentIntent because it has already succeeded after being previously confirmed.",
                ))
            }
            status => {
                return Err(ApiError::unexpected_state(format!(
                    "You cannot confirm this PaymentIntent because it has a status of {}. Only a PaymentIntent with one of the following statuses may be confirmed: {INTENT_OPEN_STATUSES}.",
                    status.as_str()
                )))
            }
        }
        if payment_method.is_none() && intent.payment_method.is_none() {
            return Err(ApiError::unexpected_state(
                "You cannot confirm this PaymentIntent because it's missing a payment method. You can either update the PaymentIntent with a payment method and then confirm it again, or confirm it again directly with a payment method.",
            ));
        }
        if let Some(name) = payment_method {
            let method = self.resolve_payment_method(&name, ctx.now)?;
            self.intent_mut(id)?.payment_method = Some(method);
        }
        if let Some(receipt_email) = receipt_email {
            self.intent_mut(id)?.receipt_email = receipt_email;
        }
        self.confirm_existing(id, ctx)?;
        Ok(self.intent_json(id, &expand, &ctx.caller))
    }

    /// Charges the intent's payment method.
    fn confirm_existing(&mut self, id: &str, ctx: &mut Ctx) -> Result<(), ApiError> {
        let intent = self.intent(id)?.clone();
        let Some(method) = intent
            .payment_method
            .as_ref()
            .and_then(|m| self.payment_methods.get(m))
            .cloned()
        else {
            return Err(ApiError::unexpected_state(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
            ));
        };
        let behavior = method.test_card().behavior;
        let mut charge = Charge {
            id: ids::object_id("ch"),
            created: ctx.now,
            amount: intent.amount,
            amount_captured: 0,
            amount_refunded: 0,
            captured: false,
            currency: intent.currency.clone(),
            customer: intent.customer.clone(),
            description: intent.description.clone(),
            receipt_email: intent.receipt_email.clone(),
            metadata: intent.metadata.clone(),
            payment_intent: intent.id.clone(),
            payment_method: method.clone(),
            status: ChargeStatus::Pending,
            failure: None,
            balance_transaction: None,
            refunds: Vec::new(),
        };
        let charge_id = charge.id.clone();
        match behavior {
            Behavior::Succeed => {
                self.charges.insert(charge_id.clone(), charge);
                let request = ctx.request.clone();
                self.charge_succeeded(id, &charge_id, &request, ctx.now)
            }
            Behavior::Delayed => {
                let json = charge.to_json(None);
                self.charges.insert(charge_id.clone(), charge);
                let intent = self.intent_mut(id)?;
                intent.status = IntentStatus::Processing;
                intent.latest_charge = Some(charge_id);
                intent.last_payment_error = None;
                let intent_json = intent.to_json();
                self.emit("charge.pending", json, None, &ctx.request, ctx.now);
                self.emit(
                    "payment_intent.processing",
                    intent_json,
                    None,
                    &ctx.request,
                    ctx.now,
                );
                ctx.settle_later.push(id.to_string());
                Ok(())
            }
            Behavior::Decline {
                code,
                decline_code,
                message,
            } => {
                charge.status = ChargeStatus::Failed;
                charge.failure = Some((
                    code.to_string(),
                    message.to_string(),
                    decline_code.map(str::to_string),
                ));
                self.charges.insert(charge_id.clone(), charge);
                let request = ctx.request.clone();
                self.charge_failed(id, &charge_id, &request, ctx.now)?;
                let intent_json = self.intent_json(id, &[], &ctx.caller);
                Err(ApiError::card(code, decline_code, message)
                    .with("charge", json!(charge_id))
                    .with("payment_intent", intent_json)
                    .with("payment_method", method.to_json()))
            }
        }
    }

    /// The intent's charge went through (at once, or when a delayed
    /// payment settles).
    fn charge_succeeded(
        &mut self,
        intent_id: &str,
        charge_id: &str,
        request: &EventRequest,
        now: i64,
    ) -> Result<(), ApiError> {
        let manual = self.intent(intent_id)?.capture_method == "manual";
        let charge = self
            .charges
            .get_mut(charge_id)
            .ok_or_else(|| ApiError::internal("the charge disappeared"))?;
        charge.status = ChargeStatus::Succeeded;
        charge.failure = None;
        if !manual {
            charge.captured = true;
            charge.amount_captured = charge.amount;
            charge.balance_transaction = Some(ids::object_id("txn"));
        }
        let amount = charge.amount;
        let charge_json = charge.to_json(None);
        let intent = self.intent_mut(intent_id)?;
        intent.latest_charge = Some(charge_id.to_string());
        intent.last_payment_error = None;
        let kind = if manual {
            intent.status = IntentStatus::RequiresCapture;
            intent.amount_capturable = amount;
            "payment_intent.amount_capturable_updated"
        } else {
            intent.status = IntentStatus::Succeeded;
            intent.amount_received = amount;
            "payment_intent.succeeded"
        };
        let intent_json = intent.to_json();
        self.emit("charge.succeeded", charge_json, None, request, now);
        self.emit(kind, intent_json, None, request, now);
        Ok(())
    }

    /// The intent's charge failed: back to `requires_payment_method` with
    /// `last_payment_error`.
    fn charge_failed(
        &mut self,
        intent_id: &str,
        charge_id: &str,
        request: &EventRequest,
        now: i64,
    ) -> Result<(), ApiError> {
        let charge = self
            .charges
            .get_mut(charge_id)
            .ok_or_else(|| ApiError::internal("the charge disappeared"))?;
        charge.status = ChargeStatus::Failed;
        let (code, message, decline_code) = charge.failure.clone().unwrap_or_else(|| {
            (
                "card_declined".to_string(),
                "Your card was declined.".to_string(),
                Some("generic_decline".to_string()),
            )
        });
        charge.failure = Some((code.clone(), message.clone(), decline_code.clone()));
        let charge_json = charge.to_json(None);
        let method_json = charge.payment_method.to_json();
        let intent = self.intent_mut(intent_id)?;
        intent.status = IntentStatus::RequiresPaymentMethod;
        intent.payment_method = None;
        intent.latest_charge = Some(charge_id.to_string());
        intent.last_payment_error = Some(PaymentError {
            charge: Some(charge_id.to_string()),
            code,
            decline_code,
            message,
            payment_method: Some(method_json),
        });
        let intent_json = intent.to_json();
        self.emit("charge.failed", charge_json, None, request, now);
        self.emit(
            "payment_intent.payment_failed",
            intent_json,
            None,
            request,
            now,
        );
        Ok(())
    }

    /// Finishes a `processing` intent (the delay passed, or the admin
    /// endpoint asked).
    pub fn settle_intent(
        &mut self,
        id: &str,
        succeed: bool,
        request: &EventRequest,
        now: i64,
    ) -> Result<Value, ApiError> {
        let intent = self.intent(id)?;
        if intent.status != IntentStatus::Processing {
            return Err(ApiError::unexpected_state(format!(
                "This PaymentIntent cannot be settled because it has a status of {}; only a processing PaymentIntent can.",
                intent.status.as_str()
            )));
        }
        let charge_id = intent
            .latest_charge
            .clone()
            .ok_or_else(|| ApiError::internal("a processing PaymentIntent without a charge"))?;
        if succeed {
            self.charge_succeeded(id, &charge_id, request, now)?;
        } else {
            if let Some(charge) = self.charges.get_mut(&charge_id) {
                charge.failure = Some((
                    "card_declined".to_string(),
                    "Your card was declined.".to_string(),
                    Some("generic_decline".to_string()),
                ));
            }
            self.charge_failed(id, &charge_id, request, now)?;
        }
        Ok(self.intent_json(id, &[], &Caller::SecretKey))
    }

    fn cancel_intent(
        &mut self,
        id: &str,
        p: &mut Params,
        ctx: &mut Ctx,
    ) -> Result<Value, ApiError> {
        let reason = p
            .choice(
                "cancellation_reason",
                &[
                    "duplicate",
                    "fraudulent",
                    "requested_by_customer",
                    "abandoned",
                ],
            )?
            .flatten();
        let expand = p.expand(INTENT_EXPAND)?;
        p.finish()?;
        let intent = self.intent(id)?;
        let status = intent.status;
        if !(status.is_open() || status == IntentStatus::RequiresCapture) {
            return Err(ApiError::unexpected_state(format!(
                "You cannot cancel this PaymentIntent because it has a status of {}. Only a PaymentIntent with one of the following statuses may be canceled: {CANCELABLE_STATUSES}.",
                status.as_str()
            )));
        }
        let latest_charge = intent.latest_charge.clone();
        if status == IntentStatus::RequiresCapture {
            // Releasing the authorization shows as a full refund of the charge.
            if let Some(charge) = latest_charge.and_then(|c| self.charges.get_mut(&c)) {
                let previous = json!({ "amount_refunded": charge.amount_refunded, "refunded": charge.refunded() });
                charge.amount_refunded = charge.amount;
                let charge_json = charge.to_json(None);
                self.emit(
                    "charge.refunded",
                    charge_json,
                    Some(previous),
                    &ctx.request,
                    ctx.now,
                );
            }
        }
        let intent = self.intent_mut(id)?;
        intent.status = IntentStatus::Canceled;
        intent.canceled_at = Some(ctx.now);
        intent.cancellation_reason = reason;
        intent.amount_capturable = 0;
        let json = intent.to_json();
        self.emit("payment_intent.canceled", json, None, &ctx.request, ctx.now);
        Ok(self.intent_json(id, &expand, &ctx.caller))
    }

    fn capture_intent(
        &mut self,
        id: &str,
        p: &mut Params,
        ctx: &mut Ctx,
    ) -> Result<Value, ApiError> {
        let amount = p.positive_integer("amount_to_capture")?;
        let metadata = p.metadata("metadata")?;
        let expand = p.expand(INTENT_EXPAND)?;
        p.finish()?;
        let intent = self.intent(id)?;
        if intent.status != IntentStatus::RequiresCapture {
            return Err(ApiError::unexpected_state(format!(
                "This PaymentIntent could not be captured because it has a status of {}. Only a PaymentIntent with one of the following statuses may be captured: requires_capture.",
                intent.status.as_str()
            )));
        }
        let capturable = intent.amount_capturable;
        let amount = amount.unwrap_or(capturable);
        if amount > capturable {
            return Err(ApiError::invalid(format!(
                "The amount to capture ({}) must be less than or equal to the PaymentIntent's amount_capturable ({}).",
                money::format_amount(amount, &intent.currency),
                money::format_amount(capturable, &intent.currency)
            ))
            .code("amount_too_large")
            .param("amount_to_capture"));
        }
        let metadata = match metadata {
            Some(update) => {
                let mut next = intent.metadata.clone();
                update.apply(&mut next)?;
                Some(next)
            }
            None => None,
        };
        let charge_id = intent
            .latest_charge
            .clone()
            .ok_or_else(|| ApiError::internal("an authorized PaymentIntent without a charge"))?;
        let charge = self
            .charges
            .get_mut(&charge_id)
            .ok_or_else(|| ApiError::internal("the charge disappeared"))?;
        charge.captured = true;
        charge.amount_captured = amount;
        charge.amount_refunded = charge.amount - amount;
        charge.balance_transaction = Some(ids::object_id("txn"));
        let charge_json = charge.to_json(None);
        let intent = self.intent_mut(id)?;
        intent.status = IntentStatus::Succeeded;
        intent.amount_received = amount;
        intent.amount_capturable = 0;
        if let Some(metadata) = metadata {
            intent.metadata = metadata;
        }
        let intent_json = intent.to_json();
        self.emit("charge.captured", charge_json, None, &ctx.request, ctx.now);
        self.emit(
            "payment_intent.succeeded",
            intent_json,
            None,
            &ctx.request,
            ctx.now,
        );
        Ok(self.intent_json(id, &expand, &ctx.caller))
    }

    fn create_refund(&mut self, p: &mut Params, ctx: &mut Ctx) -> Result<Value, ApiError> {
        let intent_id = p.nullable_string("payment_intent").flatten();
        let charge_id = p.nullable_string("charge").flatten();
        let amount = p.positive_integer("amount")?;
        let metadata = p.metadata("metadata")?;
        let reason = p
            .choice(
                "reason",
                &["duplicate", "fraudulent", "requested_by_customer"],
            )?
            .flatten();
        p.expand(&[])?;
        p.finish()?;

        let charge_id = match (&intent_id, &charge_id) {
            (None, None) => {
                return Err(ApiError::validation(
                    "One of the following params should be provided for this request: payment_intent or charge.",
                )
                .code("parameter_missing"))
            }
            (_, Some(charge_id)) => {
                let charge = self
                    .charges
                    .get(charge_id)
                    .ok_or_else(|| ApiError::missing_reference("charge", charge_id, "charge"))?;
                if let Some(intent_id) = &intent_id {
                    if &charge.payment_intent != intent_id {
                        return Err(ApiError::invalid(format!(
                            "The charge {charge_id} does not belong to the PaymentIntent {intent_id}."
                        ))
                        .param("charge"));
                    }
                }
                charge_id.clone()
            }
            (Some(intent_id), None) => {
                let intent = self.intents.get(intent_id).ok_or_else(|| {
                    ApiError::missing_reference("payment_intent", intent_id, "payment_intent")
                })?;
                let charge = intent
                    .latest_charge
                    .as_ref()
                    .and_then(|c| self.charges.get(c))
                    .filter(|c| c.status == ChargeStatus::Succeeded && c.captured);
                match charge {
                    Some(charge) => charge.id.clone(),
                    None => {
                        return Err(ApiError::invalid(format!(
                            "This PaymentIntent ({intent_id}) does not have a successful charge to refund."
                        ))
                        .code("charge_not_refundable")
                        .param("payment_intent"))
                    }
                }
            }
        };
        let charge = self
            .charges
            .get(&charge_id)
            .ok_or_else(|| ApiError::missing_reference("charge", &charge_id, "charge"))?;
        if charge.status != ChargeStatus::Succeeded || !charge.captured {
            return Err(ApiError::invalid(format!(
                "Charge {charge_id} has not been captured or did not succeed, so it cannot be refunded."
            ))
            .code("charge_not_refundable")
            .param("charge"));
        }
        let remaining = charge.refundable();
        if remaining <= 0 {
            return Err(ApiError::invalid(format!(
                "Charge {charge_id} has already been refunded."
            ))
            .code("charge_already_refunded"));
        }
        let amount = amount.unwrap_or(remaining);
        if amount > remaining {
            return Err(ApiError::invalid(format!(
                "Refund amount ({}) is greater than unrefunded amount on charge ({})",
                money::format_amount(amount, &charge.currency),
                money::format_amount(remaining, &charge.currency)
            ))
            .code("amount_too_large")
            .param("amount"));
        }
        let mut refund = Refund {
            id: ids::object_id("re"),
            created: ctx.now,
            amount,
            currency: charge.currency.clone(),
            charge: charge_id.clone(),
            payment_intent: charge.payment_intent.clone(),
            customer: charge.customer.clone(),
            payment_method: charge.payment_method.id.clone(),
            metadata: BTreeMap::new(),
            reason,
            balance_transaction: ids::object_id("txn"),
        };
        if let Some(update) = metadata {
            update.apply(&mut refund.metadata)?;
        }
        let charge = self
            .charges
            .get_mut(&charge_id)
            .ok_or_else(|| ApiError::internal("the charge disappeared"))?;
        let previous =
            json!({ "amount_refunded": charge.amount_refunded, "refunded": charge.refunded() });
        charge.amount_refunded += amount;
        charge.refunds.push(refund.id.clone());
        let charge_json = charge.to_json(None);
        let json = refund.to_json();
        self.refunds.insert(refund.id.clone(), refund);
        self.emit("refund.created", json.clone(), None, &ctx.request, ctx.now);
        self.emit(
            "charge.refunded",
            charge_json,
            Some(previous),
            &ctx.request,
            ctx.now,
        );
        Ok(json)
    }

    fn list_events(&mut self, p: &mut Params) -> Result<Value, ApiError> {
        let limit = match p.positive_integer("limit")? {
            None => 10,
            Some(n) if n > 100 => {
                return Err(
                    ApiError::validation("This value must be less than or equal to 100.")
                        .code("parameter_invalid_integer")
                        .param("limit"),
                )
            }
            Some(n) => usize::try_from(n).unwrap_or(10),
        };
        let kind = p.nullable_string("type").flatten();
        let kinds = p.list("types")?;
        let starting_after = p.nullable_string("starting_after").flatten();
        let ending_before = p.nullable_string("ending_before").flatten();
        p.finish()?;
        if kind.is_some() && kinds.is_some() {
            return Err(ApiError::validation(
                "You may only specify one of these parameters: type, types.",
            )
            .code("parameters_exclusive")
            .param("type"));
        }
        let patterns: Vec<String> = kind.into_iter().chain(kinds.unwrap_or_default()).collect();
        let matches = |kind: &str| {
            patterns.is_empty()
                || patterns
                    .iter()
                    .any(|pattern| match pattern.strip_suffix('*') {
                        Some(prefix) => kind.starts_with(prefix),
                        None => kind == pattern,
                    })
        };
        // Newest first.
        let newest_first: Vec<&crate::state::StoredEvent> = self
            .events
            .iter()
            .rev()
            .filter(|e| matches(&e.kind))
            .collect();
        let position = |id: &str, param: &str| {
            self.event(id)
                .map(|_| newest_first.iter().position(|e| e.id == id))
                .ok_or_else(|| ApiError::missing_reference("event", id, param))
        };
        let (page, has_more): (Vec<Value>, bool) = if let Some(after) = &starting_after {
            let start = position(after, "starting_after")?.map_or(newest_first.len(), |i| i + 1);
            let rest = newest_first.get(start..).unwrap_or(&[]);
            (
                rest.iter().take(limit).map(|e| e.to_json()).collect(),
                rest.len() > limit,
            )
        } else if let Some(before) = &ending_before {
            let end = position(before, "ending_before")?.unwrap_or(0);
            let head = newest_first.get(..end).unwrap_or(&[]);
            let from = head.len().saturating_sub(limit);
            (
                head.get(from..)
                    .unwrap_or(&[])
                    .iter()
                    .map(|e| e.to_json())
                    .collect(),
                from > 0,
            )
        } else {
            (
                newest_first
                    .iter()
                    .take(limit)
                    .map(|e| e.to_json())
                    .collect(),
                newest_first.len() > limit,
            )
        };
        Ok(json!({
            "object": "list",
            "data": page,
            "has_more": has_more,
            "url": "/v1/events"
        }))
    }
}
