use crate::{Money, ProductId, ValidationError};

/// The catalog's stable key for a product, so reloading a catalog file
/// updates rows instead of duplicating them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sku(String);

impl Sku {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(ValidationError::new(
                "sku",
                "1-64 characters of A-Z, a-z, 0-9, - and _",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product as the catalog file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub sku: Sku,
    pub name: String,
    pub price: Money,
    pub active: bool,
}

impl NewProduct {
    pub fn new(sku: Sku, name: &str, price: Money, active: bool) -> Result<Self, ValidationError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ValidationError::new("name", "1-200 characters"));
        }
        Ok(Self {
            sku,
            name: name.to_string(),
            price,
            active,
        })
    }
}

/// A product in the database. `price` is excluding tax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub sku: Sku,
    pub name: String,
    pub price: Money,
    pub active: bool,
}
