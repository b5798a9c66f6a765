use std::sync::Arc;

use domain::ports::ProductRepository;
use domain::{NewProduct, Product};

use crate::UnexpectedError;

/// Reads and loads the product catalog.
#[derive(Clone)]
pub struct CatalogService {
    products: Arc<dyn ProductRepository>,
}

impl CatalogService {
    pub fn new(products: Arc<dyn ProductRepository>) -> Self {
        Self { products }
    }

    pub async fn list_products(&self) -> Result<Vec<Product>, UnexpectedError> {
        Ok(self.products.list_active().await?)
    }

    /// Makes the database's catalog the given one (run at start-up).
    pub async fn load_catalog(&self, products: &[NewProduct]) -> Result<(), UnexpectedError> {
        Ok(self.products.replace_catalog(products).await?)
    }
}
