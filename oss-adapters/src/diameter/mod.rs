//! Diameter (RFC 6733) with the credit-control application (RFC 4006/8506, 3GPP TS 32.299
//! Gy/Ro): the wire codec, the AVP dictionary and the Result-Codes. The peer state machine
//! and the CCR → engine mapping build on these; `peers.rs` tracks which peers are
//! connected, for fault management.

pub mod ccr;
pub mod codec;
pub mod dictionary;
pub mod peers;
pub mod result_code;
pub mod server;

pub use codec::{Avp, DecodeError, Frame, Message};
