use domain::{Product, ProductId};
use test_support::Backend;

use crate::{new_product, yen, Harness};

backend_tests! {
    single: [
        replace_catalog_inserts_and_lists_active_by_id,
        replace_catalog_updates_rows_in_place,
        dropped_product_becomes_inactive_but_stays,
        empty_catalog_deactivates_everything,
        find_active_filters_ids,
    ],
    multi: [],
}

/// What a catalog line says about a product, without its id.
fn summary(p: &Product) -> (&str, &str, i64, bool) {
    (
        p.sku.as_str(),
        p.name.as_str(),
        p.price.minor_units(),
        p.active,
    )
}

fn assert_ids_ascending(products: &[Product]) {
    assert!(
        products.windows(2).all(|w| w[0].id < w[1].id),
        "not ordered by id: {:?}",
        products.iter().map(|p| p.id).collect::<Vec<_>>()
    );
}

async fn replace_catalog_inserts_and_lists_active_by_id(backend: Backend) {
    let h = Harness::new(backend).await;
    let products = &h.repos.products;
    assert!(products.list_active().await.unwrap().is_empty());

    // SKU and name order disagree with catalog (= id) order on purpose.
    products
        .replace_catalog(&[
            new_product("ZEN-TEA", "抹茶", 4_800, true),
            new_product("ABC-CUP", "Cup", 900, true),
            new_product("HIDDEN-1", "Not for sale", 100, false),
            new_product("MID-POT", "急須", 6_000, true),
        ])
        .await
        .unwrap();

    let listed = products.list_active().await.unwrap();
    assert_ids_ascending(&listed);
    assert_eq!(
        listed.iter().map(summary).collect::<Vec<_>>(),
        vec![
            ("ZEN-TEA", "抹茶", 4_800, true),
            ("ABC-CUP", "Cup", 900, true),
            ("MID-POT", "急須", 6_000, true),
        ]
    );
    assert!(listed.iter().all(|p| p.price == yen(p.price.minor_units())));

    // A product listed inactive by the catalog is stored, just not on sale.
    let (hidden_id, hidden_active) = h.product_row("HIDDEN-1").await.expect("stored");
    assert!(!hidden_active);
    assert!(products
        .find_active(&[ProductId::new(hidden_id)])
        .await
        .unwrap()
        .is_empty());

    // Replacing with the very same catalog changes nothing.
    products
        .replace_catalog(&[
            new_product("ZEN-TEA", "抹茶", 4_800, true),
            new_product("ABC-CUP", "Cup", 900, true),
            new_product("HIDDEN-1", "Not for sale", 100, false),
            new_product("MID-POT", "急須", 6_000, true),
        ])
        .await
        .unwrap();
    assert_eq!(products.list_active().await.unwrap(), listed);
    assert_eq!(h.product_row("HIDDEN-1").await, Some((hidden_id, false)));
}

async fn replace_catalog_updates_rows_in_place(backend: Backend) {
    let h = Harness::new(backend).await;
    let products = &h.repos.products;
    let before = h
        .catalog(&[
            ("TEA-1", "煎茶", 1_200),
            ("TEA-2", "玉露", 3_000),
            ("CUP-1", "湯呑み", 2_500),
        ])
        .await;
    assert_eq!(before.len(), 3);

    // New name and price for TEA-1, CUP-1 unchanged, TEA-2 kept, one added.
    let after = h
        .catalog(&[
            ("TEA-1", "新茶 煎茶", 1_350),
            ("CUP-1", "湯呑み", 2_500),
            ("TEA-2", "玉露", 3_000),
            ("NEW-1", "ほうじ茶", 800),
        ])
        .await;
    assert_ids_ascending(&after);
    assert_eq!(after.len(), 4);
    assert_eq!(after[0].id, before[0].id, "TEA-1 kept its row");
    assert_eq!(summary(&after[0]), ("TEA-1", "新茶 煎茶", 1_350, true));
    assert_eq!(after[1], before[1], "TEA-2 unchanged");
    assert_eq!(after[2], before[2], "CUP-1 unchanged");
    assert_eq!(summary(&after[3]), ("NEW-1", "ほうじ茶", 800, true));
    assert!(after[3].id > before[2].id);

    // find_active sees the new values too.
    let found = products.find_active(&[before[0].id]).await.unwrap();
    assert_eq!(found, vec![after[0].clone()]);

    // A product can also be taken off sale by the catalog itself, and back.
    products
        .replace_catalog(&[
            new_product("TEA-1", "新茶 煎茶", 1_350, false),
            new_product("CUP-1", "湯呑み", 2_500, true),
            new_product("TEA-2", "玉露", 3_000, true),
            new_product("NEW-1", "ほうじ茶", 800, true),
        ])
        .await
        .unwrap();
    let listed = products.list_active().await.unwrap();
    assert_eq!(listed, after[1..].to_vec());
    assert_eq!(
        h.product_row("TEA-1").await,
        Some((before[0].id.get(), false))
    );
    let back = h
        .catalog(&[
            ("TEA-1", "煎茶", 1_100),
            ("CUP-1", "湯呑み", 2_500),
            ("TEA-2", "玉露", 3_000),
            ("NEW-1", "ほうじ茶", 800),
        ])
        .await;
    assert_eq!(back[0].id, before[0].id);
    assert_eq!(summary(&back[0]), ("TEA-1", "煎茶", 1_100, true));
}

async fn dropped_product_becomes_inactive_but_stays(backend: Backend) {
    let h = Harness::new(backend).await;
    let products = &h.repos.products;
    let before = h
        .catalog(&[
            ("TEA-1", "煎茶", 1_200),
            ("TEA-2", "玉露", 3_000),
            ("CUP-1", "湯呑み", 2_500),
        ])
        .await;
    let tea2 = before[1].clone();

    let after = h
        .catalog(&[("TEA-1", "煎茶", 1_200), ("CUP-1", "湯呑み", 2_500)])
        .await;
    assert_eq!(after, vec![before[0].clone(), before[2].clone()]);
    assert!(products.find_active(&[tea2.id]).await.unwrap().is_empty());
    let found = products
        .find_active(&[before[0].id, tea2.id, before[2].id])
        .await
        .unwrap();
    assert_eq!(sorted(found), vec![before[0].clone(), before[2].clone()]);

    // Still in the database, same id, marked inactive.
    assert_eq!(h.product_row("TEA-2").await, Some((tea2.id.get(), false)));

    // Listing it again brings the same row back.
    let again = h
        .catalog(&[
            ("TEA-1", "煎茶", 1_200),
            ("TEA-2", "玉露", 3_000),
            ("CUP-1", "湯呑み", 2_500),
        ])
        .await;
    assert_eq!(again, before);
}

async fn empty_catalog_deactivates_everything(backend: Backend) {
    let h = Harness::new(backend).await;
    let products = &h.repos.products;
    let before = h
        .catalog(&[("TEA-1", "煎茶", 1_200), ("TEA-2", "玉露", 3_000)])
        .await;
    products.replace_catalog(&[]).await.unwrap();
    assert!(products.list_active().await.unwrap().is_empty());
    assert!(products
        .find_active(&[before[0].id, before[1].id])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        h.product_row("TEA-1").await,
        Some((before[0].id.get(), false))
    );
    assert_eq!(
        h.product_row("TEA-2").await,
        Some((before[1].id.get(), false))
    );
}

fn sorted(mut products: Vec<Product>) -> Vec<Product> {
    products.sort_by_key(|p| p.id);
    products
}

async fn find_active_filters_ids(backend: Backend) {
    let h = Harness::new(backend).await;
    let products = &h.repos.products;
    let all = h
        .catalog(&[
            ("TEA-1", "煎茶", 1_200),
            ("TEA-2", "玉露", 3_000),
            ("CUP-1", "湯呑み", 2_500),
            ("GONE-1", "廃番", 10),
        ])
        .await;
    let (tea1, tea2, cup, gone) = (&all[0], &all[1], &all[2], &all[3]);
    // Take GONE-1 off the catalog.
    h.catalog(&[
        ("TEA-1", "煎茶", 1_200),
        ("TEA-2", "玉露", 3_000),
        ("CUP-1", "湯呑み", 2_500),
    ])
    .await;
    let unknown = ProductId::new(gone.id.get() + 1000);

    assert!(products.find_active(&[]).await.unwrap().is_empty());
    assert!(products.find_active(&[unknown]).await.unwrap().is_empty());
    assert!(products
        .find_active(&[ProductId::new(-5), ProductId::new(0)])
        .await
        .unwrap()
        .is_empty());
    assert!(products.find_active(&[gone.id]).await.unwrap().is_empty());

    // Duplicates come back once; unknown and inactive ids are simply absent.
    let found = products
        .find_active(&[cup.id, tea1.id, cup.id, unknown, gone.id, tea1.id, cup.id])
        .await
        .unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(sorted(found), vec![tea1.clone(), cup.clone()]);

    let found = products
        .find_active(&[tea2.id, tea1.id, cup.id])
        .await
        .unwrap();
    assert_eq!(sorted(found), vec![tea1.clone(), tea2.clone(), cup.clone()]);

    let one = products.find_active(&[tea2.id]).await.unwrap();
    assert_eq!(one, vec![tea2.clone()]);
    assert_eq!(summary(&one[0]), ("TEA-2", "玉露", 3_000, true));
}
