//! A thin Stripe API client on reqwest, implementing the `PaymentGateway`
//! port. Thin on purpose: kessai uses six endpoints, and owning the HTTP
//! layer lets us decide exactly how it retries, what it logs and how it
//! names idempotency keys (see `shared/docs/field-lessons.md`).

mod objects;
mod transport;
pub mod webhook;

use std::collections::BTreeMap;
use std::time::Duration;

use application::ports::payment_gateway::{
    Customer, GatewayError, IdempotencyKey, NewCustomer, NewPaymentIntent, NewRefund,
    PaymentGateway, PaymentIntent, Refund,
};
use async_trait::async_trait;
use domain::Money;
use secrecy::SecretString;
use url::Url;

pub use transport::RetryPolicy;
use transport::{Method, Transport};

/// The API version every request pins. From 2023-08-16 on, automatic
/// payment methods are on by default, so PaymentIntents need no
/// `automatic_payment_methods` parameter.
pub const STRIPE_VERSION: &str = "2024-06-20";

#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub api_base: Url,
    pub secret_key: SecretString,
    pub connect_timeout: Duration,
    /// Bound on one attempt (connect + send + response).
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

impl StripeConfig {
    pub fn new(api_base: Url, secret_key: SecretString) -> Self {
        Self {
            api_base,
            secret_key,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

#[derive(Clone)]
pub struct StripeClient {
    transport: Transport,
}

impl StripeClient {
    pub fn new(config: StripeConfig) -> anyhow::Result<Self> {
        Ok(Self {
            transport: Transport::new(config)?,
        })
    }
}

/// Form fields in Stripe's encoding: nested keys as `metadata[order_id]`.
#[derive(Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    fn field(mut self, key: &str, value: impl ToString) -> Self {
        self.0.push((key.to_string(), value.to_string()));
        self
    }

    fn optional(self, key: &str, value: Option<impl ToString>) -> Self {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    fn map(mut self, key: &str, entries: &BTreeMap<String, String>) -> Self {
        for (k, v) in entries {
            self.0.push((format!("{key}[{k}]"), v.clone()));
        }
        self
    }

    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// Path segments come from Stripe ids we stored; refuse anything that could
/// change the path.
fn object_id(id: &str) -> Result<&str, GatewayError> {
    if !id.is_empty()
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(id)
    } else {
        Err(GatewayError::InvalidRequest {
            status: 400,
            code: Some("invalid_id".into()),
            param: Some("id".into()),
            message: "not a Stripe object id".into(),
        })
    }
}

#[async_trait]
impl PaymentGateway for StripeClient {
    async fn create_customer(
        &self,
        customer: &NewCustomer,
        key: &IdempotencyKey,
    ) -> Result<Customer, GatewayError> {
        let form = Form::default()
            .field("email", &customer.email)
            .optional("name", customer.name.as_ref())
            .map("metadata", &customer.metadata);
        let object: objects::CustomerObject = self
            .transport
            .send(
                "create_customer",
                Method::Post,
                "/v1/customers",
                Some(&form),
                Some(key),
            )
            .await?;
        Ok(object.into())
    }

    async fn create_payment_intent(
        &self,
        intent: &NewPaymentIntent,
        key: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError> {
        let form = Form::default()
            .field("amount", intent.amount.minor_units())
            .field("currency", intent.amount.currency().code())
            .optional("customer", intent.customer.as_ref())
            .map("metadata", &intent.metadata);
        let object: objects::PaymentIntentObject = self
            .transport
            .send(
                "create_payment_intent",
                Method::Post,
                "/v1/payment_intents",
                Some(&form),
                Some(key),
            )
            .await?;
        object.try_into()
    }

    async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntent, GatewayError> {
        let path = format!("/v1/payment_intents/{}", object_id(id)?);
        let object: objects::PaymentIntentObject = self
            .transport
            .send("retrieve_payment_intent", Method::Get, &path, None, None)
            .await?;
        object.try_into()
    }

    async fn update_payment_intent_amount(
        &self,
        id: &str,
        amount: Money,
        key: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError> {
        let path = format!("/v1/payment_intents/{}", object_id(id)?);
        let form = Form::default()
            .field("amount", amount.minor_units())
            .field("currency", amount.currency().code());
        let object: objects::PaymentIntentObject = self
            .transport
            .send(
                "update_payment_intent",
                Method::Post,
                &path,
                Some(&form),
                Some(key),
            )
            .await?;
        object.try_into()
    }

    async fn cancel_payment_intent(
        &self,
        id: &str,
        key: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError> {
        let path = format!("/v1/payment_intents/{}/cancel", object_id(id)?);
        let object: objects::PaymentIntentObject = self
            .transport
            .send(
                "cancel_payment_intent",
                Method::Post,
                &path,
                Some(&Form::default()),
                Some(key),
            )
            .await?;
        object.try_into()
    }

    async fn create_refund(
        &self,
        refund: &NewRefund,
        key: &IdempotencyKey,
    ) -> Result<Refund, GatewayError> {
        let form = Form::default()
            .field("payment_intent", object_id(&refund.payment_intent)?)
            .optional("amount", refund.amount.map(|a| a.minor_units()));
        let object: objects::RefundObject = self
            .transport
            .send(
                "create_refund",
                Method::Post,
                "/v1/refunds",
                Some(&form),
                Some(key),
            )
            .await?;
        Ok(object.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_nest_metadata_keys_like_stripe() {
        let metadata = BTreeMap::from([
            ("order_id".to_string(), "42".to_string()),
            ("user_id".to_string(), "7".to_string()),
        ]);
        let form = Form::default()
            .field("amount", 16500)
            .optional("customer", None::<String>)
            .map("metadata", &metadata);
        let pairs: Vec<(&str, &str)> = form
            .pairs()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("amount", "16500"),
                ("metadata[order_id]", "42"),
                ("metadata[user_id]", "7")
            ]
        );
    }

    #[test]
    fn object_ids_cannot_escape_the_path() {
        assert!(object_id("pi_3MtwBwLkdIwHu7ix28a3tqPa").is_ok());
        for bad in [
            "",
            "../v1/customers",
            "pi_1?expand=x",
            "pi 1",
            "pi_1/cancel",
        ] {
            assert!(object_id(bad).is_err(), "{bad}");
        }
    }
}

/// The gateway used while no Stripe account is configured: every call
/// fails at once with a clear reason, so registration still works and
/// payments answer 502 instead of hanging on a connection to nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotConfiguredGateway;

impl NotConfiguredGateway {
    fn refuse<T>(&self) -> Result<T, GatewayError> {
        Err(GatewayError::Authentication {
            message: "STRIPE_SECRET_KEY is not set: no payment provider is configured".into(),
        })
    }
}

#[async_trait]
impl PaymentGateway for NotConfiguredGateway {
    async fn create_customer(
        &self,
        _: &NewCustomer,
        _: &IdempotencyKey,
    ) -> Result<Customer, GatewayError> {
        self.refuse()
    }
    async fn create_payment_intent(
        &self,
        _: &NewPaymentIntent,
        _: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError> {
        self.refuse()
    }
    async fn retrieve_payment_intent(&self, _: &str) -> Result<PaymentIntent, GatewayError> {
        self.refuse()
    }
    async fn update_payment_intent_amount(
        &self,
        _: &str,
        _: Money,
        _: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError> {
        self.refuse()
    }
    async fn cancel_payment_intent(
        &self,
        _: &str,
        _: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError> {
        self.refuse()
    }
    async fn create_refund(
        &self,
        _: &NewRefund,
        _: &IdempotencyKey,
    ) -> Result<Refund, GatewayError> {
        self.refuse()
    }
}
