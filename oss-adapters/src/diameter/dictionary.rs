//! The AVPs Tollgate understands: RFC 6733 base, RFC 4006/8506 credit control and the
//! 3GPP TS 32.299 AVPs rating needs (vendor 10415). The codec decodes every AVP it finds;
//! the dictionary says how to read the data of known ones and lets the server refuse an
//! unknown AVP that carries the M bit (Result-Code 5001) as RFC 6733 §4.1 requires.

/// 3GPP's vendor identifier.
pub const VENDOR_3GPP: u32 = 10415;

/// How an AVP's data is to be read (RFC 6733 §4.2–4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvpType {
    OctetString,
    Utf8String,
    DiameterIdentity,
    DiameterUri,
    Integer32,
    Integer64,
    Unsigned32,
    Unsigned64,
    Enumerated,
    Address,
    Time,
    Grouped,
}

impl AvpType {
    /// The fixed data length of the type, if it has one.
    pub fn fixed_len(self) -> Option<usize> {
        match self {
            AvpType::Integer32 | AvpType::Unsigned32 | AvpType::Enumerated | AvpType::Time => Some(4),
            AvpType::Integer64 | AvpType::Unsigned64 => Some(8),
            _ => None,
        }
    }
}

/// One AVP definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvpDef {
    pub code: u32,
    pub vendor: u32,
    pub name: &'static str,
    pub kind: AvpType,
}

macro_rules! avps {
    ($($const:ident = $code:literal, $vendor:expr, $name:literal, $kind:ident;)*) => {
        /// AVP codes by name.
        pub mod code {
            $(pub const $const: u32 = $code;)*
        }
        /// Every AVP definition, sorted by (vendor, code).
        pub static AVPS: &[AvpDef] = &[
            $(AvpDef { code: $code, vendor: $vendor, name: $name, kind: AvpType::$kind },)*
        ];
    };
}

avps! {
    USER_NAME = 1, 0, "User-Name", Utf8String;
    EVENT_TIMESTAMP = 55, 0, "Event-Timestamp", Time;
    HOST_IP_ADDRESS = 257, 0, "Host-IP-Address", Address;
    AUTH_APPLICATION_ID = 258, 0, "Auth-Application-Id", Unsigned32;
    ACCT_APPLICATION_ID = 259, 0, "Acct-Application-Id", Unsigned32;
    VENDOR_SPECIFIC_APPLICATION_ID = 260, 0, "Vendor-Specific-Application-Id", Grouped;
    SESSION_ID = 263, 0, "Session-Id", Utf8String;
    ORIGIN_HOST = 264, 0, "Origin-Host", DiameterIdentity;
    SUPPORTED_VENDOR_ID = 265, 0, "Supported-Vendor-Id", Unsigned32;
    VENDOR_ID = 266, 0, "Vendor-Id", Unsigned32;
    FIRMWARE_REVISION = 267, 0, "Firmware-Revision", Unsigned32;
    RESULT_CODE = 268, 0, "Result-Code", Unsigned32;
    PRODUCT_NAME = 269, 0, "Product-Name", Utf8String;
    DISCONNECT_CAUSE = 273, 0, "Disconnect-Cause", Enumerated;
    ORIGIN_STATE_ID = 278, 0, "Origin-State-Id", Unsigned32;
    FAILED_AVP = 279, 0, "Failed-AVP", Grouped;
    ERROR_MESSAGE = 281, 0, "Error-Message", Utf8String;
    ROUTE_RECORD = 282, 0, "Route-Record", DiameterIdentity;
    DESTINATION_REALM = 283, 0, "Destination-Realm", DiameterIdentity;
    PROXY_INFO = 284, 0, "Proxy-Info", Grouped;
    DESTINATION_HOST = 293, 0, "Destination-Host", DiameterIdentity;
    TERMINATION_CAUSE = 295, 0, "Termination-Cause", Enumerated;
    ORIGIN_REALM = 296, 0, "Origin-Realm", DiameterIdentity;
    EXPERIMENTAL_RESULT = 297, 0, "Experimental-Result", Grouped;
    EXPERIMENTAL_RESULT_CODE = 298, 0, "Experimental-Result-Code", Unsigned32;
    INBAND_SECURITY_ID = 299, 0, "Inband-Security-Id", Unsigned32;
    CC_INPUT_OCTETS = 412, 0, "CC-Input-Octets", Unsigned64;
    CC_OUTPUT_OCTETS = 414, 0, "CC-Output-Octets", Unsigned64;
    CC_REQUEST_NUMBER = 415, 0, "CC-Request-Number", Unsigned32;
    CC_REQUEST_TYPE = 416, 0, "CC-Request-Type", Enumerated;
    CC_SERVICE_SPECIFIC_UNITS = 417, 0, "CC-Service-Specific-Units", Unsigned64;
    CC_SESSION_FAILOVER = 418, 0, "CC-Session-Failover", Enumerated;
    CC_TIME = 420, 0, "CC-Time", Unsigned32;
    CC_TOTAL_OCTETS = 421, 0, "CC-Total-Octets", Unsigned64;
    CHECK_BALANCE_RESULT = 422, 0, "Check-Balance-Result", Enumerated;
    COST_INFORMATION = 423, 0, "Cost-Information", Grouped;
    CURRENCY_CODE = 425, 0, "Currency-Code", Unsigned32;
    CREDIT_CONTROL_FAILURE_HANDLING = 427, 0, "Credit-Control-Failure-Handling", Enumerated;
    DIRECT_DEBITING_FAILURE_HANDLING = 428, 0, "Direct-Debiting-Failure-Handling", Enumerated;
    EXPONENT = 429, 0, "Exponent", Integer32;
    FINAL_UNIT_INDICATION = 430, 0, "Final-Unit-Indication", Grouped;
    GRANTED_SERVICE_UNIT = 431, 0, "Granted-Service-Unit", Grouped;
    RATING_GROUP = 432, 0, "Rating-Group", Unsigned32;
    REQUESTED_ACTION = 436, 0, "Requested-Action", Enumerated;
    REQUESTED_SERVICE_UNIT = 437, 0, "Requested-Service-Unit", Grouped;
    SERVICE_IDENTIFIER = 439, 0, "Service-Identifier", Unsigned32;
    SUBSCRIPTION_ID_DATA = 444, 0, "Subscription-Id-Data", Utf8String;
    UNIT_VALUE = 445, 0, "Unit-Value", Grouped;
    USED_SERVICE_UNIT = 446, 0, "Used-Service-Unit", Grouped;
    VALUE_DIGITS = 447, 0, "Value-Digits", Integer64;
    VALIDITY_TIME = 448, 0, "Validity-Time", Unsigned32;
    FINAL_UNIT_ACTION = 449, 0, "Final-Unit-Action", Enumerated;
    SUBSCRIPTION_ID_TYPE = 450, 0, "Subscription-Id-Type", Enumerated;
    SUBSCRIPTION_ID = 443, 0, "Subscription-Id", Grouped;
    TARIFF_TIME_CHANGE = 451, 0, "Tariff-Time-Change", Time;
    MULTIPLE_SERVICES_INDICATOR = 455, 0, "Multiple-Services-Indicator", Enumerated;
    MULTIPLE_SERVICES_CREDIT_CONTROL = 456, 0, "Multiple-Services-Credit-Control", Grouped;
    SERVICE_CONTEXT_ID = 461, 0, "Service-Context-Id", Utf8String;
    // The rest of RFC 6733's and RFC 4006's AVPs that appear inside the groups above:
    // known, so an unknown IETF AVP with the M bit inside a group is refused with 5001.
    FILTER_ID = 11, 0, "Filter-Id", Utf8String;
    PROXY_STATE = 33, 0, "Proxy-State", OctetString;
    PROXY_HOST = 280, 0, "Proxy-Host", DiameterIdentity;
    CC_MONEY = 413, 0, "CC-Money", Grouped;
    COST_UNIT = 424, 0, "Cost-Unit", Utf8String;
    REDIRECT_ADDRESS_TYPE = 433, 0, "Redirect-Address-Type", Enumerated;
    REDIRECT_SERVER = 434, 0, "Redirect-Server", Grouped;
    REDIRECT_SERVER_ADDRESS = 435, 0, "Redirect-Server-Address", Utf8String;
    RESTRICTION_FILTER_RULE = 438, 0, "Restriction-Filter-Rule", OctetString;
    SERVICE_PARAMETER_INFO = 440, 0, "Service-Parameter-Info", Grouped;
    SERVICE_PARAMETER_TYPE = 441, 0, "Service-Parameter-Type", Unsigned32;
    SERVICE_PARAMETER_VALUE = 442, 0, "Service-Parameter-Value", OctetString;
    TARIFF_CHANGE_USAGE = 452, 0, "Tariff-Change-Usage", Enumerated;
    G_S_U_POOL_IDENTIFIER = 453, 0, "G-S-U-Pool-Identifier", Unsigned32;
    CC_UNIT_TYPE = 454, 0, "CC-Unit-Type", Enumerated;
    G_S_U_POOL_REFERENCE = 457, 0, "G-S-U-Pool-Reference", Grouped;
    USER_EQUIPMENT_INFO = 458, 0, "User-Equipment-Info", Grouped;
    USER_EQUIPMENT_INFO_TYPE = 459, 0, "User-Equipment-Info-Type", Enumerated;
    USER_EQUIPMENT_INFO_VALUE = 460, 0, "User-Equipment-Info-Value", OctetString;
    CALLING_PARTY_ADDRESS = 831, VENDOR_3GPP, "Calling-Party-Address", Utf8String;
    CALLED_PARTY_ADDRESS = 832, VENDOR_3GPP, "Called-Party-Address", Utf8String;
    REPORTING_REASON = 872, VENDOR_3GPP, "Reporting-Reason", Enumerated;
    SERVICE_INFORMATION = 873, VENDOR_3GPP, "Service-Information", Grouped;
    PS_INFORMATION = 874, VENDOR_3GPP, "PS-Information", Grouped;
    IMS_INFORMATION = 876, VENDOR_3GPP, "IMS-Information", Grouped;
    ADDRESS_DATA = 897, VENDOR_3GPP, "Address-Data", Utf8String;
    RECIPIENT_ADDRESS = 1201, VENDOR_3GPP, "Recipient-Address", Grouped;
    SMS_INFORMATION = 2000, VENDOR_3GPP, "SMS-Information", Grouped;
    RECIPIENT_INFO = 2026, VENDOR_3GPP, "Recipient-Info", Grouped;
}

/// The definition of AVP `code` of `vendor` (0: IETF), if the dictionary has it.
pub fn lookup(code: u32, vendor: u32) -> Option<&'static AvpDef> {
    AVPS.iter().find(|def| def.code == code && def.vendor == vendor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_per_vendor() {
        for (i, a) in AVPS.iter().enumerate() {
            for b in &AVPS[i + 1..] {
                assert!(!(a.code == b.code && a.vendor == b.vendor), "{} and {} share a code", a.name, b.name);
            }
        }
    }

    #[test]
    fn known_codes() {
        assert_eq!(lookup(code::MULTIPLE_SERVICES_CREDIT_CONTROL, 0).map(|d| d.kind), Some(AvpType::Grouped));
        assert_eq!(lookup(code::CALLED_PARTY_ADDRESS, VENDOR_3GPP).map(|d| d.name), Some("Called-Party-Address"));
        assert_eq!(lookup(code::CALLED_PARTY_ADDRESS, 0), None);
    }
}
