use std::collections::HashMap;

use domain::{NewOrder, NewOrderLine, Order, ProductId, Quantity, UserId, ValidationError};

use super::OrderService;
use crate::UnexpectedError;

#[derive(Debug, Clone)]
pub struct OrderItemInput {
    pub product_id: i64,
    pub quantity: i64,
}

#[derive(Debug, Clone)]
pub struct CreateOrderInput {
    pub items: Vec<OrderItemInput>,
    pub notes: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateOrderError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("product {0} does not exist or is not on sale")]
    ProductNotFound(i64),
    #[error(transparent)]
    Unexpected(#[from] UnexpectedError),
}

impl OrderService {
    /// Places an order priced entirely from the database: the client names
    /// products and quantities, never prices.
    #[tracing::instrument(skip_all, fields(user_id = %user))]
    pub async fn create_order(
        &self,
        user: UserId,
        input: CreateOrderInput,
    ) -> Result<Order, CreateOrderError> {
        if input.items.is_empty() || input.items.len() > domain::order::MAX_LINES {
            return Err(ValidationError::new(
                "items",
                format!(
                    "an order has between 1 and {} lines",
                    domain::order::MAX_LINES
                ),
            )
            .into());
        }
        let mut requested = Vec::with_capacity(input.items.len());
        for item in &input.items {
            requested.push((
                ProductId::new(item.product_id),
                Quantity::new(item.quantity)?,
            ));
        }
        let ids: Vec<ProductId> = requested.iter().map(|(id, _)| *id).collect();
        let products: HashMap<ProductId, domain::Product> = self
            .products
            .find_active(&ids)
            .await
            .map_err(UnexpectedError::from)?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        let mut lines = Vec::with_capacity(requested.len());
        for (id, quantity) in requested {
            let product = products
                .get(&id)
                .ok_or(CreateOrderError::ProductNotFound(id.get()))?;
            lines.push(NewOrderLine {
                product_id: id,
                product_name: product.name.clone(),
                unit_price: product.price,
                quantity,
            });
        }
        let new_order = NewOrder::price(user, lines, self.shipping_fee, input.notes)?;
        // One reading of the clock, so the number's day and created_at agree.
        let now = self.clock.now();
        let order = self
            .orders
            .insert(new_order, Self::shop_day(now), now)
            .await
            .map_err(UnexpectedError::from)?;
        tracing::info!(order_id = %order.id, order_number = %order.number, total = %order.total(), "order placed");
        Ok(order)
    }
}
