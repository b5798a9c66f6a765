//! A stateful fake of the payment provider: PaymentIntents and Customers
//! kept in memory, idempotency keys honoured as Stripe does, and a switch
//! that makes every call fail as an outage would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use application::ports::payment_gateway::{
    ClientSecret, Customer, GatewayError, IdempotencyKey, NewCustomer, NewPaymentIntent, NewRefund,
    PaymentGateway, PaymentIntent, PaymentIntentStatus, Refund,
};
use async_trait::async_trait;
use domain::Money;

#[derive(Default)]
pub struct FakeGateway {
    intents: Mutex<HashMap<String, PaymentIntent>>,
    customers: Mutex<Vec<Customer>>,
    /// Idempotency key → id of the object the first request created.
    keys: Mutex<HashMap<String, String>>,
    pub down: AtomicBool,
    pub intents_created: AtomicUsize,
    pub customers_created: AtomicUsize,
    pub calls: AtomicUsize,
}

impl FakeGateway {
    fn check(&self) -> Result<(), GatewayError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(GatewayError::Network {
                message: "connection refused".into(),
                outcome_unknown: false,
            });
        }
        Ok(())
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn intent(&self, id: &str) -> Option<PaymentIntent> {
        self.intents.lock().unwrap().get(id).cloned()
    }

    pub fn all_intents(&self) -> Vec<PaymentIntent> {
        self.intents.lock().unwrap().values().cloned().collect()
    }

    /// Moves an intent to `status` as a customer or Stripe would.
    pub fn set_status(&self, id: &str, status: PaymentIntentStatus) {
        self.intents.lock().unwrap().get_mut(id).unwrap().status = status;
    }

    pub fn customers(&self) -> Vec<Customer> {
        self.customers.lock().unwrap().clone()
    }

    fn missing(id: &str) -> GatewayError {
        GatewayError::InvalidRequest {
            status: 404,
            code: Some("resource_missing".into()),
            param: Some("intent".into()),
            message: format!("No such payment_intent: '{id}'"),
        }
    }
}

#[async_trait]
impl PaymentGateway for FakeGateway {
    async fn create_customer(
        &self,
        customer: &NewCustomer,
        key: &IdempotencyKey,
    ) -> Result<Customer, GatewayError> {
        self.check()?;
        let mut keys = self.keys.lock().unwrap();
        let mut customers = self.customers.lock().unwrap();
        if let Some(id) = keys.get(key.as_str()) {
            return Ok(customers.iter().find(|c| &c.id == id).cloned().unwrap());
        }
        let created = Customer {
            id: format!("cus_fake{}", customers.len() + 1),
            email: Some(customer.email.clone()),
            metadata: customer.metadata.clone(),
        };
        keys.insert(key.as_str().to_string(), created.id.clone());
        customers.push(created.clone());
        self.customers_created.fetch_add(1, Ordering::SeqCst);
        Ok(created)
    }

    async fn create_payment_intent(
        &self,
        intent: &NewPaymentIntent,
        key: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError> {
        self.check()?;
        let mut keys = self.keys.lock().unwrap();
        let mut intents = self.intents.lock().unwrap();
        if let Some(id) = keys.get(key.as_str()) {
            return Ok(intents[id].clone());
        }
        let id = format!("pi_fake{}", intents.len() + 1);
        let created = PaymentIntent {
            id: id.clone(),
            amount: intent.amount.minor_units(),
            currency: intent.amount.currency().code().to_string(),
            status: PaymentIntentStatus::RequiresPaymentMethod,
            client_secret: Some(ClientSecret::new(format!("{id}_secret_fake"))),
            customer: intent.customer.clone(),
            metadata: intent.metadata.clone(),
            last_payment_error: None,
            latest_charge: None,
            created: 0,
        };
        keys.insert(key.as_str().to_string(), id.clone());
        intents.insert(id, created.clone());
        self.intents_created.fetch_add(1, Ordering::SeqCst);
        Ok(created)
    }

    async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntent, GatewayError> {
        self.check()?;
        self.intent(id).ok_or_else(|| Self::missing(id))
    }

    async fn update_payment_intent_amount(
        &self,
        id: &str,
        amount: Money,
        _key: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError> {
        self.check()?;
        let mut intents = self.intents.lock().unwrap();
        let intent = intents.get_mut(id).ok_or_else(|| Self::missing(id))?;
        intent.amount = amount.minor_units();
        intent.currency = amount.currency().code().to_string();
        Ok(intent.clone())
    }

    async fn cancel_payment_intent(
        &self,
        id: &str,
        _key: &IdempotencyKey,
    ) -> Result<PaymentIntent, GatewayError> {
        self.check()?;
        let mut intents = self.intents.lock().unwrap();
        let intent = intents.get_mut(id).ok_or_else(|| Self::missing(id))?;
        match intent.status {
            PaymentIntentStatus::Succeeded | PaymentIntentStatus::Processing => {
                Err(GatewayError::InvalidRequest {
                    status: 400,
                    code: Some("payment_intent_unexpected_state".into()),
                    param: None,
                    message: format!(
                        "You cannot cancel this PaymentIntent because it has a status of {}.",
                        intent.status.as_str()
                    ),
                })
            }
            _ => {
                intent.status = PaymentIntentStatus::Canceled;
                Ok(intent.clone())
            }
        }
    }

    async fn create_refund(
        &self,
        refund: &NewRefund,
        _key: &IdempotencyKey,
    ) -> Result<Refund, GatewayError> {
        self.check()?;
        let intent = self
            .intent(&refund.payment_intent)
            .ok_or_else(|| Self::missing(&refund.payment_intent))?;
        Ok(Refund {
            id: "re_fake1".into(),
            amount: refund.amount.map_or(intent.amount, |a| a.minor_units()),
            currency: intent.currency,
            status: "succeeded".into(),
            payment_intent: Some(intent.id),
        })
    }
}
