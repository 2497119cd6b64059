//! Any bytes on a Diameter connection are framed and decoded into a message or a
//! Result-Code, never a panic; a decoded message re-encodes to bytes that decode to it.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tollgate_oss_adapters::diameter::{Frame, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(Frame::Message(length)) = tollgate_oss_adapters::diameter::codec::frame(data) else { return };
    match Message::decode(Bytes::copy_from_slice(&data[..length])) {
        Ok(message) => {
            for avp in &message.avps {
                let _ = avp.group();
                let _ = avp.has_valid_text();
            }
            let again = Message::decode(message.encode()).expect("a decoded message re-encodes");
            assert_eq!(again, message);
        }
        Err(err) => assert!(err.result_code >= 3000, "{err}"),
    }
});
