//! The product catalog file: a JSON list of products loaded at start.

use std::path::Path;

use anyhow::Context;
use domain::{Currency, Money, NewProduct, Sku};
use serde::Deserialize;

/// The demo catalog shipped with kessai (acrylic goods priced in JPY).
const DEMO_CATALOG: &str = include_str!("../catalog/demo.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    products: Vec<CatalogEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogEntry {
    sku: String,
    name: String,
    price: i64,
    currency: String,
    #[serde(default = "active_by_default")]
    active: bool,
}

fn active_by_default() -> bool {
    true
}

pub fn demo_catalog() -> anyhow::Result<Vec<NewProduct>> {
    parse_catalog(DEMO_CATALOG).context("the bundled demo catalog is invalid")
}

pub fn load_catalog_file(path: &Path) -> anyhow::Result<Vec<NewProduct>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read CATALOG_FILE {}", path.display()))?;
    parse_catalog(&text).with_context(|| format!("CATALOG_FILE {} is invalid", path.display()))
}

pub fn parse_catalog(text: &str) -> anyhow::Result<Vec<NewProduct>> {
    let file: CatalogFile = serde_json::from_str(text)?;
    let mut seen = std::collections::HashSet::new();
    file.products
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let context = || format!("product #{} ({})", i + 1, entry.sku);
            if !seen.insert(entry.sku.clone()) {
                anyhow::bail!("{}: duplicate sku", context());
            }
            let currency = Currency::parse(&entry.currency).with_context(context)?;
            let price = Money::new(entry.price, currency).with_context(context)?;
            let sku = Sku::parse(&entry.sku).with_context(context)?;
            NewProduct::new(sku, &entry.name, price, entry.active).with_context(context)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_catalog_has_at_least_three_active_yen_products() {
        let products = demo_catalog().unwrap();
        let active_jpy = products
            .iter()
            .filter(|p| p.active && p.price.currency() == Currency::Jpy)
            .count();
        assert!(active_jpy >= 3, "only {active_jpy}");
    }

    #[test]
    fn rejects_bad_entries() {
        for bad in [
            r#"{"products":[{"sku":"a","name":"A","price":-1,"currency":"jpy"}]}"#,
            r#"{"products":[{"sku":"a","name":"A","price":1,"currency":"xxx"}]}"#,
            r#"{"products":[{"sku":"a b","name":"A","price":1,"currency":"jpy"}]}"#,
            r#"{"products":[{"sku":"a","name":"","price":1,"currency":"jpy"}]}"#,
            r#"{"products":[{"sku":"a","name":"A","price":1,"currency":"jpy"},{"sku":"a","name":"B","price":1,"currency":"jpy"}]}"#,
            r#"{"products":[{"sku":"a","name":"A","price":1,"currency":"jpy","colour":"red"}]}"#,
        ] {
            assert!(parse_catalog(bad).is_err(), "{bad}");
        }
    }
}
