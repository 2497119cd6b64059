//! Alarms (TMF642) through the API in process, on SQLite and PostgreSQL: every token reads,
//! only an administrator raises, acknowledges and clears; the same alarmed object and
//! probable cause updates the open alarm (200) instead of opening another (201); 400
//! naming the field; filters and pagination; each change in the audit trail with the
//! token as actor; the alarms' hub (administrators) gets an event per change but a repeat.

mod common;

use axum::http::StatusCode;
use common::{call, token};
use serde_json::json;
use tollgate_api::{router, ApiConfig};
use tollgate_store::{store_test, Role};

const ALARMS: &str = "/tmf-api/alarmManagement/v4/alarm";

fn raise(object: &str, severity: &str) -> serde_json::Value {
    json!({
        "alarmedObject": {"id": object, "@referredType": "shard"},
        "alarmType": "processingErrorAlarm",
        "perceivedSeverity": severity,
        "probableCause": "storageCapacityProblem",
        "specificProblem": "journal write failed",
    })
}

store_test! {
    async fn alarms_are_read_by_every_token_and_changed_by_an_administrator(store) {
        let app = router((*store).clone(), &ApiConfig::default());
        let admin = token(&store, Role::Admin, None).await;
        let reader = token(&store, Role::ReadOnly, None).await;
        let care = token(&store, Role::Care, None).await;

        assert_eq!(call(&app, "GET", ALARMS, None, None, &[]).await.status, StatusCode::UNAUTHORIZED);
        for other in [&reader, &care] {
            let refused = call(&app, "POST", ALARMS, Some(other), Some(raise("shard/0", "major")), &[]).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN);
        }
        let raised = call(&app, "POST", ALARMS, Some(&admin), Some(raise("shard/0", "major")), &[]).await;
        assert_eq!(raised.status, StatusCode::CREATED, "{}", raised.body);
        let id = raised.body["id"].as_str().expect("id").to_owned();
        assert_eq!(raised.body["state"], "raised");
        assert_eq!(raised.body["ackState"], "unacknowledged");
        assert_eq!(raised.body["href"], format!("{ALARMS}/{id}"));
        assert_eq!(raised.body["alarmedObjectType"], "shard");

        // The same object and cause: the open alarm is updated, not doubled.
        let again = call(&app, "POST", ALARMS, Some(&admin), Some(raise("shard/0", "critical")), &[]).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        assert_eq!((again.body["id"].as_str(), &again.body["state"]), (Some(id.as_str()), &json!("updated")));
        assert_eq!(again.body["perceivedSeverity"], "critical");
        let other = call(&app, "POST", ALARMS, Some(&admin), Some(raise("shard/1", "minor")), &[]).await;
        assert_eq!(other.status, StatusCode::CREATED);

        let bad = call(&app, "POST", ALARMS, Some(&admin), Some(raise("shard/2", "fatal")), &[]).await;
        assert_eq!((bad.status, &bad.body["reason"]), (StatusCode::BAD_REQUEST, &json!("perceivedSeverity")));
        let mut no_object = raise("x", "minor");
        no_object.as_object_mut().expect("object").remove("alarmedObject");
        let bad = call(&app, "POST", ALARMS, Some(&admin), Some(no_object), &[]).await;
        assert_eq!((bad.status, &bad.body["reason"]), (StatusCode::BAD_REQUEST, &json!("alarmedObject")));

        let one = format!("{ALARMS}/{id}");
        assert_eq!(call(&app, "PATCH", &one, Some(&reader), Some(json!({"ackState": "acknowledged"})), &[]).await.status, StatusCode::FORBIDDEN);
        let acked = call(&app, "PATCH", &one, Some(&admin), Some(json!({"ackState": "acknowledged", "ackUserId": "noc-1"})), &[]).await;
        assert_eq!(acked.status, StatusCode::OK, "{}", acked.body);
        assert_eq!((&acked.body["ackState"], &acked.body["ackUserId"]), (&json!("acknowledged"), &json!("noc-1")));
        let frozen = call(&app, "PATCH", &one, Some(&admin), Some(json!({"probableCause": "other"})), &[]).await;
        assert_eq!((frozen.status, &frozen.body["reason"]), (StatusCode::BAD_REQUEST, &json!("probableCause")));
        let reopened = call(&app, "PATCH", &one, Some(&admin), Some(json!({"state": "raised"})), &[]).await;
        assert_eq!(reopened.status, StatusCode::BAD_REQUEST);
        let cleared = call(&app, "PATCH", &one, Some(&admin), Some(json!({"state": "cleared"})), &[]).await;
        assert_eq!(cleared.status, StatusCode::OK);
        assert_eq!((&cleared.body["state"], &cleared.body["perceivedSeverity"]), (&json!("cleared"), &json!("cleared")));
        assert!(cleared.body["alarmClearedTime"].is_string(), "{}", cleared.body);

        let read = call(&app, "GET", &one, Some(&reader), None, &[]).await;
        assert_eq!((read.status, &read.body["state"]), (StatusCode::OK, &json!("cleared")));
        let open = call(&app, "GET", &format!("{ALARMS}?state=raised"), Some(&care), None, &[]).await;
        assert_eq!(open.status, StatusCode::OK);
        assert_eq!(open.body.as_array().map(Vec::len), Some(1));
        assert_eq!(open.body[0]["alarmedObject"]["id"], "shard/1");
        let page = call(&app, "GET", &format!("{ALARMS}?limit=1&offset=1&fields=state"), Some(&reader), None, &[]).await;
        assert_eq!(page.header("X-Total-Count"), "2");
        assert_eq!(page.body[0]["id"], json!(id), "newest first: the second is the first raised");
        assert!(page.body[0].get("probableCause").is_none(), "only the fields asked for");
        let by_severity = |severity: &str| format!("{ALARMS}?perceivedSeverity={severity}&fields=state");
        let cleared = call(&app, "GET", &by_severity("cleared"), Some(&reader), None, &[]).await;
        assert_eq!((cleared.header("X-Total-Count"), &cleared.body[0]["id"]), ("1", &json!(id)));
        let critical = call(&app, "GET", &by_severity("critical"), Some(&reader), None, &[]).await;
        assert_eq!(critical.header("X-Total-Count"), "0", "the cleared alarm was critical, but is cleared now");
        let minor = call(&app, "GET", &by_severity("minor"), Some(&reader), None, &[]).await;
        assert_eq!(minor.header("X-Total-Count"), "1");
        let bad = call(&app, "GET", &format!("{ALARMS}?ackState=maybe"), Some(&reader), None, &[]).await;
        assert_eq!((bad.status, &bad.body["reason"]), (StatusCode::BAD_REQUEST, &json!("ackState")));
        assert_eq!(call(&app, "GET", &format!("{ALARMS}/999999"), Some(&reader), None, &[]).await.status, StatusCode::NOT_FOUND);

        let trail = store.audit_entries(Some(("alarm", &id)), 0, 100).await.expect("audit");
        let actions: Vec<(&str, &str)> = trail.iter().map(|e| (e.action.as_str(), e.actor.as_str())).collect();
        let actor = trail[0].actor.clone();
        assert!(actor.contains("admin"), "the token is the actor: {actor}");
        assert_eq!(actions, [("raised", actor.as_str()), ("updated", actor.as_str()), ("acknowledged", actor.as_str()), ("cleared", actor.as_str())]);

        // Fields outside TMF642's Alarm_Create, the server's own, and a new alarm that is
        // not raised are refused naming the field; the fault manager's bookkeeping fields
        // are accepted.
        for (field, value) in [("extra", json!(1)), ("id", json!("a1")), ("href", json!("/x")), ("state", json!("cleared"))] {
            let mut body = raise("shard/3", "minor");
            body[field] = value;
            let bad = call(&app, "POST", ALARMS, Some(&admin), Some(body), &[]).await;
            assert_eq!((bad.status, bad.body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{}", bad.body);
        }
        let mut kept = raise("shard/3", "minor");
        kept["externalAlarmId"] = json!("nms-7");
        assert_eq!(call(&app, "POST", ALARMS, Some(&admin), Some(kept), &[]).await.status, StatusCode::CREATED);
    }
}

store_test! {
    async fn each_alarm_change_but_a_repeat_is_an_event_for_the_alarms_hub(store) {
        let app = router((*store).clone(), &ApiConfig::default());
        let admin = token(&store, Role::Admin, None).await;
        let care = token(&store, Role::Care, None).await;
        let hub = "/tmf-api/alarmManagement/v4/hub";
        let listener = json!({"callback": "http://127.0.0.1:9/alarms"});
        assert_eq!(call(&app, "POST", hub, Some(&care), Some(listener.clone()), &[]).await.status, StatusCode::FORBIDDEN);
        let registered = call(&app, "POST", hub, Some(&admin), Some(listener), &[]).await;
        assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.body);
        let cleared_only = json!({"callback": "http://127.0.0.1:9/cleared", "query": "eventType=AlarmStateChangeEvent"});
        assert_eq!(call(&app, "POST", hub, Some(&admin), Some(cleared_only), &[]).await.status, StatusCode::CREATED);
        let pending = || async { store.hub_pending().await.expect("count") };

        let raised = call(&app, "POST", ALARMS, Some(&admin), Some(raise("gw/1", "major")), &[]).await;
        assert_eq!(pending().await, 1, "AlarmCreateEvent for the first listener");
        let id = raised.body["id"].as_str().expect("id").to_owned();
        call(&app, "POST", ALARMS, Some(&admin), Some(raise("gw/1", "major")), &[]).await;
        assert_eq!(pending().await, 1, "a repeat is no event");
        let one = format!("{ALARMS}/{id}");
        call(&app, "PATCH", &one, Some(&admin), Some(json!({"ackState": "acknowledged"})), &[]).await;
        assert_eq!(pending().await, 2, "AlarmAttributeValueChangeEvent");
        call(&app, "PATCH", &one, Some(&admin), Some(json!({"state": "cleared"})), &[]).await;
        assert_eq!(pending().await, 4, "AlarmStateChangeEvent for both listeners");
    }
}
