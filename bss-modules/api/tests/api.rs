//! The management API in process (tower's `oneshot`), on SQLite and PostgreSQL: tokens and
//! roles (401, 403), the TMF630 machinery (404, 412, 415, 428, 413, 400 naming the field,
//! pagination headers, `fields`, filters, merge patch), the catalogue's lifecycle (409) and
//! activation (422 with file:line), the audit trail with its chain verified, and 429.

mod common;

use axum::http::StatusCode;
use common::{call, call_raw};
use serde_json::json;
use tollgate_api::{router, ApiConfig};
use tollgate_store::{store_test, Role, Store};

const BASE: &str = "/tmf-api/productCatalogManagement/v4";

async fn token(store: &Store, role: Role) -> String {
    common::token(store, role, None).await
}

fn plan() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tariffs/examples/prepaid-mobile.toml"))
        .expect("the example plan")
}

store_test! {
    async fn every_route_needs_a_valid_token_and_a_role_that_allows_it(store) {
        let app = router((*store).clone(), &ApiConfig::default());
        let list = format!("{BASE}/productOffering");
        let answer = call(&app, "GET", &list, None, None, &[]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(answer.header("www-authenticate").starts_with("Bearer"));
        let made_up = format!("tg_{}", "0".repeat(64));
        for bad in ["nonsense", made_up.as_str()] {
            let answer = call(&app, "GET", &list, Some(bad), None, &[]).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{bad}");
            assert!(answer.header("www-authenticate").contains("invalid_token"));
        }
        let read_only = token(&store, Role::ReadOnly).await;
        assert_eq!(call(&app, "GET", &list, Some(&read_only), None, &[]).await.status, StatusCode::OK);
        for role in [Role::ReadOnly, Role::Care, Role::Finance] {
            let token = token(&store, role).await;
            let answer = call(&app, "POST", &list, Some(&token), Some(json!({"name": "x"})), &[]).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{role}");
            let answer = call(&app, "GET", "/tmf-api/audit/v1/auditRecord", Some(&token), None, &[]).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{role}");
        }
        // A revoked token stops working at once.
        let admin = token(&store, Role::Admin).await;
        assert_eq!(call(&app, "GET", &list, Some(&admin), None, &[]).await.status, StatusCode::OK);
        let id = store.tokens().await.expect("tokens").into_iter().find(|t| t.role == Role::Admin).expect("admin").id;
        let mut tx = store.begin().await.expect("begin");
        tx.revoke_token(id, jiff::Timestamp::now()).await.expect("revoke");
        tx.commit().await.expect("commit");
        assert_eq!(call(&app, "GET", &list, Some(&admin), None, &[]).await.status, StatusCode::UNAUTHORIZED);
    }
}

store_test! {
    async fn the_tmf_machinery_answers_each_case_with_its_status_naming_the_field(store) {
        let app = router((*store).clone(), &ApiConfig::default());
        let admin = token(&store, Role::Admin).await;
        let admin = Some(admin.as_str());
        let categories = format!("{BASE}/category");

        let created = call(&app, "POST", &categories, admin, Some(json!({"name": "Mobile", "description": "d"})), &[]).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.body["id"].as_str().expect("id").to_owned();
        let item = format!("{categories}/{id}");
        assert_eq!(created.header("location"), item);
        assert_eq!(created.header("etag"), "W/\"1\"");
        assert_eq!(created.body["lifecycleStatus"], "In study");

        // A body declared over the limit is refused before it is read.
        let declared = [("content-length", "2000000")];
        let answer = call_raw(&app, "POST", &categories, admin, Some("{}".to_owned()), &declared).await;
        assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("body")));

        // Paging and selection given once each.
        for twice in ["limit=1&limit=2", "offset=0&offset=1", "fields=name&fields=description"] {
            let answer = call(&app, "GET", &format!("{categories}?{twice}"), admin, None, &[]).await;
            let name = twice.split('=').next().expect("name");
            assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(name)), "{twice}");
        }
        let answer = call(&app, "GET", &format!("{item}?fields=name&fields=name"), admin, None, &[]).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);

        // A path the router cannot read (an id of invalid UTF-8) is a TMF error body too,
        // not axum's plain text.
        let answer = call(&app, "GET", &format!("{categories}/%FF"), admin, None, &[]).await;
        assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("path")), "{}", answer.body);
        assert_eq!(answer.header("content-type"), "application/json");

        // 404: an unknown id, an unknown resource, another kind's id.
        assert_eq!(call(&app, "GET", &format!("{categories}/nope"), admin, None, &[]).await.status, StatusCode::NOT_FOUND);
        assert_eq!(call(&app, "GET", &format!("{BASE}/widget"), admin, None, &[]).await.status, StatusCode::NOT_FOUND);
        assert_eq!(call(&app, "GET", &format!("{BASE}/productOffering/{id}"), admin, None, &[]).await.status, StatusCode::NOT_FOUND);

        // fields keeps id, href and @type.
        let got = call(&app, "GET", &format!("{item}?fields=name"), admin, None, &[]).await;
        assert_eq!(got.header("etag"), "W/\"1\"");
        let mut keys: Vec<&String> = got.body.as_object().expect("object").keys().collect();
        keys.sort();
        assert_eq!(keys, ["@type", "href", "id", "name"]);

        // PATCH: merge-patch only (415), If-Match required (428), stale (412), then applied.
        let patch = Some(json!({"description": null, "lifecycleStatus": "In design"}));
        let answer = call(&app, "PATCH", &item, admin, patch.clone(), &[("content-type", "application/json"), ("if-match", "W/\"1\"")]).await;
        assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(answer.body["reason"], "Content-Type");
        assert_eq!(call(&app, "PATCH", &item, admin, patch.clone(), &[]).await.status, StatusCode::PRECONDITION_REQUIRED);
        // Regression: `If-Match: *` was answered 400 as a malformed ETag. It names no
        // version, so where one is required it is 428 like a missing header.
        let star = call(&app, "PATCH", &item, admin, patch.clone(), &[("if-match", "*")]).await;
        assert_eq!((star.status, star.body["reason"].as_str()), (StatusCode::PRECONDITION_REQUIRED, Some("If-Match")));
        assert_eq!(call(&app, "PATCH", &item, admin, patch.clone(), &[("if-match", "W/\"9\"")]).await.status, StatusCode::PRECONDITION_FAILED);
        let patched = call(&app, "PATCH", &item, admin, patch.clone(), &[("if-match", "W/\"1\"")]).await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
        assert_eq!(patched.header("etag"), "W/\"2\"");
        assert!(patched.body.get("description").is_none(), "null removes a member");
        assert_eq!(call(&app, "PATCH", &item, admin, patch, &[("if-match", "W/\"1\"")]).await.status, StatusCode::PRECONDITION_FAILED);

        // 409: skipping a lifecycle step.
        let answer = call(&app, "PATCH", &item, admin, Some(json!({"lifecycleStatus": "Obsolete"})), &[("if-match", "W/\"2\"")]).await;
        assert_eq!(answer.status, StatusCode::CONFLICT);
        assert_eq!(answer.body["reason"], "lifecycleStatus");

        // 400 naming the field.
        for (body, field) in [
            (json!({"name": "x", "lifecycleStatus": "Launched"}), "lifecycleStatus"),
            (json!({"name": "x", "isRoot": "yes"}), "isRoot"),
            (json!({"name": "x", "validFor": {"startDateTime": "2026-02-01T00:00:00Z", "endDateTime": "2026-01-01T00:00:00Z"}}), "validFor.endDateTime"),
            (json!({"name": "x", "parentId": "nope"}), "parentId.id"),
            (json!({"name": "x", "id": "mine"}), "id"),
            (json!({"description": "no name"}), "body"),
        ] {
            let answer = call(&app, "POST", &categories, admin, Some(body.clone()), &[]).await;
            assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}: {}", answer.body);
        }
        let price = json!({"name": "p", "priceType": "recurring", "recurringChargePeriodType": "month", "price": {"unit": "EUR", "value": -1}});
        let answer = call(&app, "POST", &format!("{BASE}/productOfferingPrice"), admin, Some(price), &[]).await;
        assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("price.value")));
        let answer = call(&app, "POST", &categories, admin, None, &[("content-type", "application/json")]).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(call(&app, "POST", &categories, admin, Some(json!({"name": "x"})), &[("content-type", "text/plain")]).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        for (query, field) in [("limit=5000", "limit"), ("offset=-1", "offset"), ("limit=x", "limit"), ("colour=red", "colour")] {
            let answer = call(&app, "GET", &format!("{categories}?{query}"), admin, None, &[]).await;
            assert_eq!((answer.status, answer.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{query}");
        }

        // 413 past the body limit.
        let big = json!({"name": "x", "description": "a".repeat(tollgate_api::MAX_BODY_BYTES)});
        assert_eq!(call(&app, "POST", &categories, admin, Some(big), &[]).await.status, StatusCode::PAYLOAD_TOO_LARGE);

        // Pagination and filters.
        for n in 0..5 {
            let answer = call(&app, "POST", &categories, admin, Some(json!({"name": format!("c{n}"), "lifecycleStatus": "In design"})), &[]).await;
            assert_eq!(answer.status, StatusCode::CREATED);
        }
        let page = call(&app, "GET", &format!("{categories}?lifecycleStatus=In%20design&offset=2&limit=3&fields=name"), admin, None, &[]).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!((page.header("x-total-count"), page.header("x-result-count")), ("6", "3"));
        assert_eq!(page.body.as_array().map(|items| items.iter().map(|i| i["name"].clone()).collect::<Vec<_>>()), Some(vec![json!("c1"), json!("c2"), json!("c3")]));
        let page = call(&app, "GET", &format!("{categories}?name=c4"), admin, None, &[]).await;
        assert_eq!(page.header("x-total-count"), "1");

        // DELETE: not while released; 204 while in design.
        // If-Match `*` (RFC 9110 §13.1.1) is no condition where one is optional.
        assert_eq!(call(&app, "DELETE", &item, admin, None, &[("if-match", "W/\"1\"")]).await.status, StatusCode::PRECONDITION_FAILED);
        let gone = call(&app, "DELETE", &item, admin, None, &[("if-match", "*")]).await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
        assert_eq!(call(&app, "GET", &item, admin, None, &[]).await.status, StatusCode::NOT_FOUND);
        assert_eq!(call(&app, "DELETE", &item, admin, None, &[]).await.status, StatusCode::NOT_FOUND);
    }
}

store_test! {
    async fn activation_compiles_the_plan_and_the_audit_trail_records_every_change(store) {
        let app = router((*store).clone(), &ApiConfig::default());
        let admin = token(&store, Role::Admin).await;
        let admin = Some(admin.as_str());
        let bad = plan().replacen("[plan]", "[plan]\nbogus_field = 1", 1);
        let mut offerings = Vec::new();
        for source in [bad, plan()] {
            let price = json!({"name": "usage", "priceType": "usage", "tariffPlan": {"source": source, "file": "mobile.toml"}});
            let price = call(&app, "POST", &format!("{BASE}/productOfferingPrice"), admin, Some(price), &[]).await;
            assert_eq!(price.status, StatusCode::CREATED, "{}", price.body);
            let monthly = json!({"name": "monthly", "priceType": "recurring", "recurringChargePeriodType": "month", "price": {"unit": "EUR", "value": 9.99}});
            let monthly = call(&app, "POST", &format!("{BASE}/productOfferingPrice"), admin, Some(monthly), &[]).await;
            assert_eq!(monthly.body["price"]["value"], json!(9.99));
            let offering = json!({"name": "Mobile", "lifecycleStatus": "In design",
                "productOfferingPrice": [{"id": monthly.body["id"]}, {"id": price.body["id"]}]});
            let offering = call(&app, "POST", &format!("{BASE}/productOffering"), admin, Some(offering), &[]).await;
            assert_eq!(offering.status, StatusCode::CREATED, "{}", offering.body);
            offerings.push(format!("{BASE}/productOffering/{}", offering.body["id"].as_str().expect("id")));
        }
        let activate = Some(json!({"lifecycleStatus": "Active"}));
        let refused = call(&app, "PATCH", &offerings[0], admin, activate.clone(), &[("if-match", "W/\"1\"")]).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(refused.body["reason"].as_str().is_some_and(|r| r.starts_with("productOfferingPrice[1]")), "{}", refused.body);
        let message = refused.body["message"].as_str().unwrap_or("");
        assert!(message.contains("mobile.toml:") && message.contains("bogus_field"), "{message}");
        let active = call(&app, "PATCH", &offerings[1], admin, activate, &[("if-match", "W/\"1\"")]).await;
        assert_eq!(active.status, StatusCode::OK, "{}", active.body);

        let records = call(&app, "GET", "/tmf-api/audit/v1/auditRecord?limit=100", admin, None, &[]).await;
        assert_eq!(records.status, StatusCode::OK);
        assert_eq!(records.header("x-total-count"), "7", "six creations and one activation");
        let last = &records.body[6];
        assert_eq!(last["action"], "lifecycle:Active");
        assert!(last["actor"].as_str().is_some_and(|a| a.starts_with("token:") && a.ends_with(":admin")));
        assert_eq!((last["before"]["lifecycleStatus"].as_str(), last["after"]["lifecycleStatus"].as_str()), (Some("In design"), Some("Active")));
        let page = call(&app, "GET", "/tmf-api/audit/v1/auditRecord?offset=5&limit=1&fields=action", admin, None, &[]).await;
        assert_eq!((page.header("x-result-count"), page.body[0]["id"].as_str()), ("1", Some("6")));
        let check = call(&app, "GET", "/tmf-api/audit/v1/chainVerification", admin, None, &[]).await;
        assert_eq!((check.body["intact"].as_bool(), check.body["entries"].as_i64()), (Some(true), Some(7)), "{}", check.body);
    }
}

store_test! {
    async fn a_token_over_its_rate_is_told_when_to_retry(store) {
        let app = router((*store).clone(), &ApiConfig::with_rate_limit(1, 3));
        let reader = token(&store, Role::ReadOnly).await;
        let other = token(&store, Role::ReadOnly).await;
        let list = format!("{BASE}/category");
        for _ in 0..3 {
            assert_eq!(call(&app, "GET", &list, Some(&reader), None, &[]).await.status, StatusCode::OK);
        }
        let limited = call(&app, "GET", &list, Some(&reader), None, &[]).await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.header("retry-after"), "1");
        assert_eq!(call(&app, "GET", &list, Some(&other), None, &[]).await.status, StatusCode::OK);
    }
}
