//! The innermost ring of kessai: what an order, a user, money and a payment *are*,
//! and the rules that hold whatever database, web framework or payment provider
//! surrounds them. Nothing here performs I/O; the repository traits in [`ports`]
//! are implemented by the outer layers.

pub mod email;
pub mod error;
pub mod ids;
pub mod money;
pub mod order;
pub mod ports;
pub mod product;
pub mod user;

pub use email::Email;
pub use error::{RepositoryError, ValidationError};
pub use ids::{OrderId, ProductId, SessionId, UserId};
pub use money::{Currency, Money, MoneyError};
pub use order::{
    NewOrder, NewOrderLine, Order, OrderLine, OrderNumber, OrderState, OrderStatus, PaymentFailure,
    Quantity, TransitionError,
};
pub use product::{NewProduct, Product, Sku};
pub use user::{DisplayName, NewUser, PasswordHash, PlainPassword, Session, User};
