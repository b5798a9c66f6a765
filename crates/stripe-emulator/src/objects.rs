//! The stored objects and their JSON, shaped as Stripe's API version
//! 2024-06-20 returns them (the field names and types of Stripe's published
//! fixtures; see `tests/fixtures/stripe_resources.json`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::cards::{self, TestCard};

#[derive(Debug, Clone)]
pub(crate) struct Customer {
    pub id: String,
    pub created: i64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub invoice_prefix: String,
}

impl Customer {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "customer",
            "address": null,
            "balance": 0,
            "created": self.created,
            "currency": null,
            "default_source": null,
            "delinquent": false,
            "description": self.description,
            "discount": null,
            "email": self.email,
            "invoice_prefix": self.invoice_prefix,
            "invoice_settings": {
                "custom_fields": null,
                "default_payment_method": null,
                "footer": null,
                "rendering_options": null
            },
            "livemode": false,
            "metadata": self.metadata,
            "name": self.name,
            "next_invoice_sequence": 1,
            "phone": self.phone,
            "preferred_locales": [],
            "shipping": null,
            "tax_exempt": "none",
            "test_clock": null
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PaymentMethod {
    pub id: String,
    pub created: i64,
    pub card: usize,
    pub fingerprint: String,
    pub exp_year: i64,
}

impl PaymentMethod {
    pub fn test_card(&self) -> &'static TestCard {
        cards::by_index(self.card)
    }

    pub fn to_json(&self) -> Value {
        let card = self.test_card();
        json!({
            "id": self.id,
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": {
                "address": {
                    "city": null, "country": null, "line1": null,
                    "line2": null, "postal_code": null, "state": null
                },
                "email": null,
                "name": null,
                "phone": null,
                "tax_id": null
            },
            "card": {
                "brand": card.brand,
                "checks": {
                    "address_line1_check": null,
                    "address_postal_code_check": null,
                    "cvc_check": "unchecked"
                },
                "country": card.country,
                "display_brand": card.brand,
                "exp_month": 12,
                "exp_year": self.exp_year,
                "fingerprint": self.fingerprint,
                "funding": card.funding,
                "generated_from": null,
                "last4": card.last4(),
                "networks": { "available": [card.brand], "preferred": null },
                "three_d_secure_usage": { "supported": true },
                "wallet": null,
                "regulated_status": "unregulated"
            },
            "created": self.created,
            "customer": null,
            "customer_account": null,
            "livemode": false,
            "metadata": {},
            "type": "card"
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
}

impl IntentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequiresPaymentMethod => "requires_payment_method",
            Self::RequiresConfirmation => "requires_confirmation",
            Self::Processing => "processing",
            Self::RequiresCapture => "requires_capture",
            Self::Canceled => "canceled",
            Self::Succeeded => "succeeded",
        }
    }

    /// The states in which amount, currency, customer and payment method
    /// may change and the intent may be confirmed.
    pub fn is_open(self) -> bool {
        // `requires_action` (3-D Secure) is never reached: no such test card.
        matches!(
            self,
            Self::RequiresPaymentMethod | Self::RequiresConfirmation
        )
    }
}

/// A card failure recorded as `last_payment_error`.
#[derive(Debug, Clone)]
pub(crate) struct PaymentError {
    pub charge: Option<String>,
    pub code: String,
    pub decline_code: Option<String>,
    pub message: String,
    pub payment_method: Option<Value>,
}

impl PaymentError {
    pub fn to_json(&self) -> Value {
        let mut value = json!({
            "charge": self.charge,
            "code": self.code,
            "doc_url": format!("https://stripe.com/docs/error-codes/{}", self.code.replace('_', "-")),
            "message": self.message,
            "payment_method": self.payment_method,
            "type": "card_error"
        });
        if let (Some(decline_code), Some(map)) = (&self.decline_code, value.as_object_mut()) {
            map.insert("decline_code".into(), json!(decline_code));
        }
        value
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PaymentIntent {
    pub id: String,
    pub client_secret: String,
    pub created: i64,
    pub amount: i64,
    pub currency: String,
    pub status: IntentStatus,
    pub customer: Option<String>,
    pub description: Option<String>,
    pub receipt_email: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub payment_method: Option<String>,
    pub payment_method_types: Vec<String>,
    pub automatic_payment_methods: bool,
    pub capture_method: String,
    pub amount_received: i64,
    pub amount_capturable: i64,
    pub canceled_at: Option<i64>,
    pub cancellation_reason: Option<String>,
    pub latest_charge: Option<String>,
    pub last_payment_error: Option<PaymentError>,
    pub payment_method_configuration: String,
}

impl PaymentIntent {
    /// The object as a secret-key caller sees it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": self.amount_capturable,
            "amount_details": { "tip": {} },
            "amount_received": self.amount_received,
            "application": null,
            "application_fee_amount": null,
            "automatic_payment_methods": self.automatic_payment_methods_json(),
            "canceled_at": self.canceled_at,
            "cancellation_reason": self.cancellation_reason,
            "capture_method": self.capture_method,
            "client_secret": self.client_secret,
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "customer_account": null,
            "description": self.description,
            "excluded_payment_method_types": null,
            "last_payment_error": self.last_payment_error.as_ref().map(PaymentError::to_json),
            "latest_charge": self.latest_charge,
            "livemode": false,
            "managed_payments": null,
            "metadata": self.metadata,
            "next_action": null,
            "on_behalf_of": null,
            "payment_method": self.payment_method,
            "payment_method_configuration_details": self.configuration_details(),
            "payment_method_options": {
                "card": {
                    "installments": null,
                    "mandate_options": null,
                    "network": null,
                    "request_three_d_secure": "automatic"
                }
            },
            "payment_method_types": self.payment_method_types,
            "processing": null,
            "receipt_email": self.receipt_email,
            "review": null,
            "setup_future_usage": null,
            "shipping": null,
            "source": null,
            "statement_descriptor": null,
            "statement_descriptor_suffix": null,
            "status": self.status.as_str(),
            "transfer_data": null,
            "transfer_group": null
        })
    }

    /// The object as a publishable-key caller (Stripe.js, with the client
    /// secret) sees it: no metadata, customer, charges or amounts received.
    pub fn to_public_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_details": { "tip": {} },
            "automatic_payment_methods": self.automatic_payment_methods_json(),
            "canceled_at": self.canceled_at,
            "cancellation_reason": self.cancellation_reason,
            "capture_method": self.capture_method,
            "client_secret": self.client_secret,
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "description": self.description,
            "last_payment_error": self.last_payment_error.as_ref().map(PaymentError::to_json),
            "livemode": false,
            "next_action": null,
            "payment_method": self.payment_method,
            "payment_method_configuration_details": self.configuration_details(),
            "payment_method_types": self.payment_method_types,
            "processing": null,
            "receipt_email": self.receipt_email,
            "setup_future_usage": null,
            "shipping": null,
            "source": null,
            "status": self.status.as_str()
        })
    }

    fn automatic_payment_methods_json(&self) -> Value {
        if self.automatic_payment_methods {
            json!({ "allow_redirects": "always", "enabled": true })
        } else {
            Value::Null
        }
    }

    fn configuration_details(&self) -> Value {
        if self.automatic_payment_methods {
            json!({ "id": self.payment_method_configuration, "parent": null })
        } else {
            Value::Null
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChargeStatus {
    Pending,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
pub(crate) struct Charge {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    pub captured: bool,
    pub currency: String,
    pub customer: Option<String>,
    pub description: Option<String>,
    pub receipt_email: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub payment_intent: String,
    pub payment_method: PaymentMethod,
    pub status: ChargeStatus,
    pub failure: Option<(String, String, Option<String>)>,
    pub balance_transaction: Option<String>,
    pub refunds: Vec<String>,
}

impl Charge {
    pub fn status_str(&self) -> &'static str {
        match self.status {
            ChargeStatus::Pending => "pending",
            ChargeStatus::Succeeded => "succeeded",
            ChargeStatus::Failed => "failed",
        }
    }

    /// What is left to refund: the captured amount minus refunds.
    pub fn refundable(&self) -> i64 {
        if self.status == ChargeStatus::Succeeded && self.captured {
            self.amount_captured - self.amount_refunded_by_refunds()
        } else {
            0
        }
    }

    /// `amount_refunded` also counts an uncaptured remainder released at
    /// capture; refunds can only take what was captured.
    fn amount_refunded_by_refunds(&self) -> i64 {
        self.amount_refunded - (self.amount - self.amount_captured).max(0)
    }

    pub fn refunded(&self) -> bool {
        self.amount_refunded >= self.amount && self.amount > 0
    }

    fn outcome(&self) -> Value {
        match (&self.status, &self.failure) {
            (ChargeStatus::Failed, Some((code, _, decline_code))) => {
                let reason = decline_code.clone().unwrap_or_else(|| code.clone());
                let seller_message = if reason == "generic_decline" {
                    "The bank did not return any further details with this decline.".to_string()
                } else {
                    format!("The bank returned the decline code `{reason}`.")
                };
                json!({
                    "advice_code": null,
                    "network_advice_code": null,
                    "network_decline_code": null,
                    "network_status": "declined_by_network",
                    "reason": reason,
                    "risk_level": "normal",
                    "risk_score": 20,
                    "seller_message": seller_message,
                    "type": "issuer_declined"
                })
            }
            (ChargeStatus::Pending, _) => Value::Null,
            _ => json!({
                "advice_code": null,
                "network_advice_code": null,
                "network_decline_code": null,
                "network_status": "approved_by_network",
                "reason": null,
                "risk_level": "normal",
                "risk_score": 20,
                "seller_message": "Payment complete.",
                "type": "authorized"
            }),
        }
    }

    pub fn to_json(&self, refunds: Option<Vec<Value>>) -> Value {
        let card = self.payment_method.test_card();
        let paid = matches!(self.status, ChargeStatus::Succeeded);
        let mut value = json!({
            "id": self.id,
            "object": "charge",
            "amount": self.amount,
            "amount_captured": self.amount_captured,
            "amount_refunded": self.amount_refunded,
            "application": null,
            "application_fee": null,
            "application_fee_amount": null,
            "balance_transaction": self.balance_transaction,
            "billing_details": {
                "address": {
                    "city": null, "country": null, "line1": null,
                    "line2": null, "postal_code": null, "state": null
                },
                "email": null,
                "name": null,
                "phone": null,
                "tax_id": null
            },
            "calculated_statement_descriptor": "KESSAI EMULATOR",
            "captured": self.captured,
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "description": self.description,
            "disputed": false,
            "failure_balance_transaction": null,
            "failure_code": self.failure.as_ref().map(|(code, _, _)| code),
            "failure_message": self.failure.as_ref().map(|(_, message, _)| message),
            "fraud_details": {},
            "livemode": false,
            "metadata": self.metadata,
            "on_behalf_of": null,
            "outcome": self.outcome(),
            "paid": paid,
            "payment_intent": self.payment_intent,
            "payment_method": self.payment_method.id,
            "payment_method_details": {
                "card": {
                    "amount_authorized": if paid { Some(self.amount) } else { None },
                    "authorization_code": null,
                    "brand": card.brand,
                    "checks": {
                        "address_line1_check": null,
                        "address_postal_code_check": null,
                        "cvc_check": null
                    },
                    "country": card.country,
                    "exp_month": 12,
                    "exp_year": self.payment_method.exp_year,
                    "extended_authorization": { "status": "disabled" },
                    "fingerprint": self.payment_method.fingerprint,
                    "funding": card.funding,
                    "incremental_authorization": { "status": "unavailable" },
                    "installments": null,
                    "last4": card.last4(),
                    "mandate": null,
                    "multicapture": { "status": "unavailable" },
                    "network": card.brand,
                    "network_token": { "used": false },
                    "network_transaction_id": null,
                    "overcapture": { "maximum_amount_capturable": self.amount, "status": "unavailable" },
                    "regulated_status": "unregulated",
                    "three_d_secure": null,
                    "wallet": null
                },
                "type": "card"
            },
            "receipt_email": self.receipt_email,
            "receipt_number": null,
            "receipt_url": null,
            "refunded": self.refunded(),
            "review": null,
            "shipping": null,
            "source": null,
            "source_transfer": null,
            "statement_descriptor": null,
            "statement_descriptor_suffix": null,
            "status": self.status_str(),
            "transfer_data": null,
            "transfer_group": null
        });
        // Since API version 2022-11-15 `refunds` appears only when expanded.
        if let (Some(refunds), Some(map)) = (refunds, value.as_object_mut()) {
            map.insert(
                "refunds".into(),
                json!({
                    "object": "list",
                    "data": refunds,
                    "has_more": false,
                    "total_count": self.refunds.len(),
                    "url": format!("/v1/charges/{}/refunds", self.id)
                }),
            );
        }
        value
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Refund {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub currency: String,
    pub charge: String,
    pub payment_intent: String,
    pub customer: Option<String>,
    pub payment_method: String,
    pub metadata: BTreeMap<String, String>,
    pub reason: Option<String>,
    pub balance_transaction: String,
}

impl Refund {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "refund",
            "amount": self.amount,
            "balance_transaction": self.balance_transaction,
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "customer_account": null,
            "destination_details": {
                "card": {
                    "reference_status": "pending",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund"
                },
                "type": "card"
            },
            "metadata": self.metadata,
            "payment_intent": self.payment_intent,
            "payment_method": self.payment_method,
            "reason": self.reason,
            "receipt_number": null,
            "source_transfer_reversal": null,
            "status": "succeeded",
            "transfer_reversal": null
        })
    }
}
