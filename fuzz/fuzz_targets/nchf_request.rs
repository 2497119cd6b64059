//! Any body posted to the Nchf server is validated against the 3GPP schema and read into
//! a request or refused with a response, never a panic; what is read maps onto engine
//! unit requests and a reference that names its subscriber.
#![no_main]

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tollgate_engine::Plans;
use tollgate_oss_adapters::nchf::server::{identity, reference_of, subscriber_of, unit_requests, RequestReader};

fn reader() -> &'static RequestReader {
    static READER: OnceLock<RequestReader> = OnceLock::new();
    READER.get_or_init(|| RequestReader::new().expect("the bundled schema compiles"))
}

/// The example prepaid plan: its rating groups are counted in seconds, bytes and events,
/// so a unit usage is read in the unit of its group (or refused).
fn plans() -> &'static Plans {
    static PLANS: OnceLock<Plans> = OnceLock::new();
    PLANS.get_or_init(|| {
        let mut plans = Plans::new();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tariffs/examples/prepaid-mobile.toml");
        plans.load(&path).expect("the example plan compiles");
        plans
    })
}

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(request) = reader().read(&headers, data) {
        let _ = unit_requests(&request, true, plans());
        if let Some(subscriber) = &request.subscriber_identifier {
            let _ = identity(subscriber);
            // `read` bounds the subscriber, so every one read gets a reference that names it.
            let reference = reference_of(&request, subscriber).expect("a subscriber within the bound");
            assert_eq!(subscriber_of(&reference).as_deref(), Some(subscriber.as_str()));
        }
    }
});
