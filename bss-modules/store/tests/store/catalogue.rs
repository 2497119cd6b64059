//! Catalogue rows: insert, read back with money exact, filtered pages with a total,
//! optimistic updates, deletes refused while referred to, and immutable plan versions.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::json;
use tollgate_store::{store_test, CatalogueFilter, CatalogueItem, StoreError, Version};

use crate::at;

fn item(kind: &str, id: &str, name: &str, status: &str) -> CatalogueItem {
    CatalogueItem {
        kind: kind.into(),
        id: id.into(),
        name: name.into(),
        lifecycle_status: status.into(),
        version_label: None,
        is_bundle: Some(false),
        price_type: None,
        price: None,
        doc: json!({"id": id, "name": name}),
        refs: Vec::new(),
    }
}

store_test! {
    async fn catalogue_items_round_trip_filter_page_and_refuse_stale_writes(store) {
        let mut price = item("ProductOfferingPrice", "p1", "monthly", "In study");
        price.price = Some((Decimal::from_str("9.990").expect("decimal"), "EUR".into()));
        price.price_type = Some("recurring".into());
        let mut offer = item("ProductOffering", "o1", "gold", "In study");
        offer.refs = vec![("productOfferingPrice".into(), "p1".into())];
        let mut tx = store.begin().await.expect("begin");
        tx.insert_catalogue_item(&price, at(0)).await.expect("insert price");
        tx.insert_catalogue_item(&offer, at(0)).await.expect("insert offering");
        for n in 0..5 {
            tx.insert_catalogue_item(&item("ProductOffering", &format!("x{n}"), "silver", "Active"), at(0))
                .await
                .expect("insert");
        }
        assert!(matches!(tx.insert_catalogue_item(&offer, at(0)).await, Err(StoreError::Conflict { .. })));
        tx.commit().await.expect("commit");

        let read = store.catalogue_item("p1").await.expect("read").expect("found");
        assert_eq!(read.value.price, Some((Decimal::from_str("9.990").expect("decimal"), "EUR".into())));
        assert_eq!(read.version, Version::FIRST);
        let read = store.catalogue_item("o1").await.expect("read").expect("found");
        assert_eq!(read.value.refs, vec![("productOfferingPrice".to_owned(), "p1".to_owned())]);

        let silver = CatalogueFilter { name: Some("silver".into()), ..CatalogueFilter::default() };
        let page = store.catalogue_list("ProductOffering", &silver, 1, 2).await.expect("list");
        assert_eq!(page.total, 5);
        assert_eq!(page.items.iter().map(|i| i.value.id.as_str()).collect::<Vec<_>>(), ["x1", "x2"]);
        let active = CatalogueFilter { lifecycle_status: Some("Active".into()), ..CatalogueFilter::default() };
        assert_eq!(store.catalogue_list("ProductOfferingPrice", &active, 0, 10).await.expect("list").total, 0);

        let mut tx = store.begin().await.expect("begin");
        let mut changed = read.value.clone();
        changed.name = "gold+".into();
        let v2 = tx.update_catalogue_item(&changed, Version::FIRST, at(1)).await.expect("update");
        assert_eq!(v2.get(), 2);
        match tx.update_catalogue_item(&changed, Version::FIRST, at(1)).await {
            Err(StoreError::StaleVersion { expected: 1, found: 2, .. }) => {}
            other => panic!("expected StaleVersion, got {other:?}"),
        }
        assert!(matches!(tx.delete_catalogue_item("p1", Version::FIRST).await, Err(StoreError::Conflict { .. })));
        tx.delete_catalogue_item("o1", v2).await.expect("delete the offering");
        tx.delete_catalogue_item("p1", Version::FIRST).await.expect("then its price");
        tx.commit().await.expect("commit");
        assert!(store.catalogue_item("p1").await.expect("read").is_none());
    }
}

store_test! {
    async fn a_tariff_plan_version_is_recorded_once_and_never_changes(store) {
        let mut tx = store.begin().await.expect("begin");
        assert!(tx.record_tariff_plan("gold", 3, "source A", at(0)).await.expect("record"));
        assert!(!tx.record_tariff_plan("gold", 3, "source A", at(1)).await.expect("again"));
        assert!(matches!(tx.record_tariff_plan("gold", 3, "source B", at(2)).await, Err(StoreError::Conflict { .. })));
        assert!(tx.record_tariff_plan("gold", 4, "source B", at(2)).await.expect("new version"));
        tx.commit().await.expect("commit");
        let versions = store.tariff_plan_versions().await.expect("list");
        assert_eq!(versions.iter().map(|(id, v, _)| (id.as_str(), *v)).collect::<Vec<_>>(), [("gold", 3), ("gold", 4)]);
    }
}
