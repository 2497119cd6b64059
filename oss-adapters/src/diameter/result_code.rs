//! Result-Code values (RFC 6733 §7.1, RFC 4006 §9).

pub const SUCCESS: u32 = 2001;
pub const LIMITED_SUCCESS: u32 = 2002;
pub const COMMAND_UNSUPPORTED: u32 = 3001;
pub const UNABLE_TO_DELIVER: u32 = 3002;
pub const APPLICATION_UNSUPPORTED: u32 = 3007;
pub const INVALID_HDR_BITS: u32 = 3008;
pub const INVALID_AVP_BITS: u32 = 3009;
pub const UNKNOWN_PEER: u32 = 3010;
/// DIAMETER_TOO_BUSY (RFC 6733 §7.1.3): the answer when no memory frees up for a message
/// within the message deadline; the peer should try another server.
pub const TOO_BUSY: u32 = 3004;
pub const END_USER_SERVICE_DENIED: u32 = 4010;
pub const CREDIT_CONTROL_NOT_APPLICABLE: u32 = 4011;
pub const CREDIT_LIMIT_REACHED: u32 = 4012;
pub const AVP_UNSUPPORTED: u32 = 5001;
pub const UNKNOWN_SESSION_ID: u32 = 5002;
pub const INVALID_AVP_VALUE: u32 = 5004;
pub const MISSING_AVP: u32 = 5005;
pub const AVP_OCCURS_TOO_MANY_TIMES: u32 = 5009;
pub const NO_COMMON_APPLICATION: u32 = 5010;
pub const UNSUPPORTED_VERSION: u32 = 5011;
pub const UNABLE_TO_COMPLY: u32 = 5012;
pub const INVALID_AVP_LENGTH: u32 = 5014;
pub const INVALID_MESSAGE_LENGTH: u32 = 5015;
pub const USER_UNKNOWN: u32 = 5030;
pub const RATING_FAILED: u32 = 5031;
