//! The parts of ChargingDataRequest / ChargingDataResponse the CHF reads and writes. The
//! whole request has been validated against the bundled schema first; these types read
//! only what charging needs and ignore the rest.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargingDataRequest {
    pub subscriber_identifier: Option<String>,
    pub invocation_time_stamp: String,
    pub invocation_sequence_number: u32,
    #[serde(default)]
    pub retransmission_indicator: bool,
    #[serde(default)]
    pub one_time_event: bool,
    pub one_time_event_type: Option<String>,
    #[serde(default)]
    pub multiple_unit_usage: Vec<MultipleUnitUsage>,
    pub nf_consumer_identification: serde_json::Value,
    /// What tells one PDU session's charging from another's (its `chargingId`,
    /// `pduSessionInformation.pduSessionID` and `dnnId`): read for the reference only.
    #[serde(default, rename = "pDUSessionChargingInformation")]
    pub pdu_session_charging_information: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultipleUnitUsage {
    pub rating_group: u32,
    pub requested_unit: Option<Units>,
    #[serde(default)]
    pub used_unit_container: Vec<Units>,
}

/// RequestedUnit, UsedUnitContainer and GrantedUnit share these quantity fields.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Units {
    #[serde(rename = "time", skip_serializing_if = "Option::is_none")]
    pub time_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_volume: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplink_volume: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downlink_volume: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_specific_units: Option<u64>,
}

impl Units {
    /// The first quantity given, time before volume before service-specific units, and
    /// which field carried it.
    pub fn quantity(&self) -> Option<(u64, UnitField)> {
        [UnitField::Time, UnitField::Volume, UnitField::ServiceSpecific]
            .into_iter()
            .find_map(|field| self.get(field).map(|units| (units, field)))
    }

    /// The quantity in `field`, if these units have one (the volume: `totalVolume`, else
    /// uplink plus downlink).
    pub fn get(&self, field: UnitField) -> Option<u64> {
        match field {
            UnitField::Time => self.time_seconds,
            UnitField::Volume => self.total_volume.or_else(|| {
                (self.uplink_volume.is_some() || self.downlink_volume.is_some())
                    .then(|| self.uplink_volume.unwrap_or(0).saturating_add(self.downlink_volume.unwrap_or(0)))
            }),
            UnitField::ServiceSpecific => self.service_specific_units,
        }
    }

    /// Whether every quantity given is zero, or none is given (nothing was used).
    pub fn is_zero(&self) -> bool {
        [self.time_seconds, self.total_volume, self.uplink_volume, self.downlink_volume, self.service_specific_units]
            .iter()
            .all(|quantity| quantity.unwrap_or(0) == 0)
    }

    pub fn of(field: UnitField, units: u64) -> Units {
        match field {
            UnitField::Time => Units { time_seconds: Some(units), ..Units::default() },
            UnitField::Volume => Units { total_volume: Some(units), ..Units::default() },
            UnitField::ServiceSpecific => Units { service_specific_units: Some(units), ..Units::default() },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitField {
    Time,
    Volume,
    ServiceSpecific,
}

impl UnitField {
    /// The field's name in a request.
    pub fn name(self) -> &'static str {
        match self {
            UnitField::Time => "time",
            UnitField::Volume => "totalVolume (or uplinkVolume and downlinkVolume)",
            UnitField::ServiceSpecific => "serviceSpecificUnits",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargingDataResponse {
    pub invocation_time_stamp: String,
    pub invocation_sequence_number: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub multiple_unit_information: Vec<MultipleUnitInformation>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MultipleUnitInformation {
    pub result_code: &'static str,
    pub rating_group: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_unit: Option<Units>,
    #[serde(rename = "validityTime", skip_serializing_if = "Option::is_none")]
    pub validity_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_unit_indication: Option<FinalUnitIndication>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FinalUnitIndication {
    pub final_unit_action: &'static str,
}

/// RFC 7807 problem details as TS 29.571 shapes them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProblemDetails {
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Empty: none (401 and 403 of an access token carry none).
    #[serde(skip_serializing_if = "str::is_empty")]
    pub cause: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid_params: Vec<InvalidParam>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InvalidParam {
    pub param: String,
    pub reason: String,
}
