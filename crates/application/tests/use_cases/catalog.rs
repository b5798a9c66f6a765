use domain::{NewProduct, ProductId, Sku};

use crate::support::{assert_injected, yen, World};

fn catalog_entry(sku: &str, name: &str, price: i64, active: bool) -> NewProduct {
    NewProduct::new(Sku::parse(sku).unwrap(), name, yen(price), active).unwrap()
}

#[tokio::test]
async fn list_products_returns_only_active_products() {
    let world = World::new();
    let tea = world.products.add("TEA-01", "Sencha", yen(5000), true);
    world
        .products
        .add("TEA-02", "Old Gyokuro", yen(9000), false);
    let cups = world.products.add("CUP-01", "Tea cups", yen(2500), true);

    let listed = world.catalog().list_products().await.unwrap();

    assert_eq!(listed, vec![tea, cups]);
}

#[tokio::test]
async fn list_products_reports_a_storage_failure_as_unexpected() {
    let world = World::new();
    world.products.failing.set(true);

    let error = world.catalog().list_products().await.unwrap_err();

    assert_injected(&error);
}

#[tokio::test]
async fn load_catalog_replaces_the_stored_catalog() {
    let world = World::new();
    let tea = world.products.add("TEA-01", "Sencha", yen(5000), true);
    let gone = world.products.add("TEA-02", "Gyokuro", yen(9000), true);

    world
        .catalog()
        .load_catalog(&[
            catalog_entry("TEA-01", "Sencha (new harvest)", 5500, true),
            catalog_entry("CUP-01", "Tea cups", 2500, true),
        ])
        .await
        .unwrap();

    let listed = world.catalog().list_products().await.unwrap();
    let summary: Vec<(&str, &str, i64)> = listed
        .iter()
        .map(|p| (p.sku.as_str(), p.name.as_str(), p.price.minor_units()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("TEA-01", "Sencha (new harvest)", 5500),
            ("CUP-01", "Tea cups", 2500),
        ]
    );
    assert_eq!(listed[0].id, tea.id, "a known SKU keeps its id");
    let all = world.products.all();
    let dropped = all.iter().find(|p| p.id == gone.id).unwrap();
    assert!(
        !dropped.active,
        "a product left out of the catalog is deactivated"
    );
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].id, ProductId::new(3));
}

#[tokio::test]
async fn load_catalog_reports_a_storage_failure_as_unexpected() {
    let world = World::new();
    world.products.failing.set(true);

    let error = world
        .catalog()
        .load_catalog(&[catalog_entry("TEA-01", "Sencha", 5000, true)])
        .await
        .unwrap_err();

    assert_injected(&error);
}
