//! The rating function: (compiled plan, usage event, available allowances) → rated
//! event with a breakdown. Pure, synchronous and deterministic: no clock, no I/O, and
//! no heap allocation for events of up to three lines.
//!
//! How an event is priced:
//! 1. The destination is the longest matching prefix; the band is the one in force at
//!    the start of the usage (plan-local time, holidays included).
//! 2. The *opening rate* (service, destination, band at start) fixes the connect fee,
//!    first interval, increment, minimum and maximum charge for the whole event. Units
//!    charged = first interval, then whole increments.
//! 3. Allowances that apply (service, destination, rating group, band at start) pay for
//!    the first charged units, lowest `priority` first.
//! 4. The rest is priced unit by unit along the usage: for a service counted in seconds
//!    the charged seconds are laid on the clock from the start, and each stretch is
//!    priced at the rate of the band it falls in; a price step (`from` units into the
//!    usage) changes the price wherever it falls. A new line starts at every change of
//!    band, step or allowance.
//! 5. The connect fee applies when any unit is paid with money; then the minimum charge
//!    raises the money total and the maximum charge caps it, each as a line of its own.
//! 6. The exact total is rounded once with the plan's rule; each line is rounded with
//!    the same rule and the residue (at most half a minor unit per line) is carried on
//!    the largest line, so the lines always add up to the total.
//!
//! Units, time and money are computed with checked arithmetic: an event beyond a limit
//! ([`Unit::max_per_event`], [`MAX_START_UTC_SECONDS`]) or whose money would not fit a
//! 96-bit decimal is refused with its [`Unrated`] code, never saturated or wrapped.

use rust_decimal::Decimal;
use serde::Serialize;
use smallvec::SmallVec;

use crate::money::{round_lines, Amounts};
use crate::plan::{AllowanceId, BandId, CompiledPlan, DestinationId, Rate, ServiceId, Unit};
use crate::prefix::PrefixMatch;

/// Longest usage of a seconds-counted service priced as one event (7 days).
pub const MAX_EVENT_SECONDS: u64 = 7 * 24 * 3600;
/// Most data priced as one event (1 PiB).
pub const MAX_EVENT_BYTES: u64 = 1 << 50;
/// Most events (messages, requests) priced as one event.
pub const MAX_EVENT_EVENTS: u64 = 1_000_000_000;
/// Most units of a `units`-counted service priced as one event.
pub const MAX_EVENT_UNITS: u64 = 1_000_000_000_000;
/// Latest start priced (9999-01-01T00:00:00Z): later ones are refused, so the seconds of
/// a usage can always be laid on the clock without overflow.
pub const MAX_START_UTC_SECONDS: i64 = 253_370_764_800;

/// One usage to price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageEvent<'a> {
    pub service: ServiceId,
    /// The rating group the usage was reported under, if any (for allowance scopes).
    pub rating_group: Option<u32>,
    /// The called number, digits with an optional leading `+`; `None` for services
    /// without a destination (data, most events).
    pub destination: Option<&'a str>,
    /// When the usage started, in seconds since the Unix epoch (UTC).
    pub start_utc_seconds: i64,
    /// Amount used, in the service's unit.
    pub units: u64,
}

/// Units left in one allowance bucket that the rating may draw on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AllowanceBalance {
    /// The caller's identifier of the bucket; it comes back in the draws.
    pub bucket: u64,
    /// Which of the plan's allowances the bucket holds.
    pub allowance: AllowanceId,
    pub remaining_units: u64,
}

/// Units drawn from one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AllowanceDraw {
    pub bucket: u64,
    pub allowance: AllowanceId,
    pub units: u64,
}

/// Why an event could not be priced. A normal answer, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Unrated {
    /// The service index is not one of the plan's.
    UnknownService,
    /// The usage started before this plan version took effect.
    BeforeEffective { effective_from_utc_seconds: i64 },
    /// No destination prefix matches the number.
    UnknownDestination,
    /// The number holds a non-digit at this byte offset.
    MalformedDestination { offset: usize },
    /// The plan has no rate for the service and destination in this band.
    NoRate { band: BandId },
    /// The usage is more than its unit's limit ([`Unit::max_per_event`]): `limit` of `unit`.
    UsageTooLarge { limit: u64, unit: Unit },
    /// The amount does not fit a 96-bit decimal.
    AmountOverflow,
    /// The usage starts after [`MAX_START_UTC_SECONDS`] (or, for a service counted in
    /// seconds, would run past the last instant rating can represent).
    StartTooLate { latest_utc_seconds: i64 },
}

impl Unrated {
    /// A stable snake_case code for rejects files and answers.
    pub fn code(&self) -> &'static str {
        match self {
            Unrated::UnknownService => "unknown_service",
            Unrated::BeforeEffective { .. } => "before_effective",
            Unrated::UnknownDestination => "unknown_destination",
            Unrated::MalformedDestination { .. } => "malformed_destination",
            Unrated::NoRate { .. } => "no_rate",
            Unrated::UsageTooLarge { .. } => "usage_too_large",
            Unrated::AmountOverflow => "amount_overflow",
            Unrated::StartTooLate { .. } => "start_too_late",
        }
    }
}

/// What a line of the breakdown is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LineKind {
    ConnectFee,
    /// Units paid with money at one band's price step.
    Usage {
        band: BandId,
        step: u8,
    },
    /// Units paid by an allowance bucket (amount zero).
    Allowance {
        bucket: u64,
        allowance: AllowanceId,
        band: BandId,
    },
    /// Raises the money total to the rate's minimum charge.
    MinimumCharge,
    /// Caps the money total at the rate's maximum charge (negative amount).
    MaximumChargeCap,
}

/// One line of a rated event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RatedLine {
    pub kind: LineKind,
    /// Offset of the line's first unit into the charged usage.
    pub from_unit: u64,
    pub units: u64,
    /// Price per `per` units (zero for fees and allowance lines).
    pub price: Decimal,
    pub per: u64,
    pub exact_amount: Decimal,
    /// `exact_amount` after rounding, residue included; lines sum to the event amount.
    pub amount: Decimal,
}

impl Amounts for RatedLine {
    fn exact(&self) -> Decimal {
        self.exact_amount
    }
    fn rounded_mut(&mut self) -> &mut Decimal {
        &mut self.amount
    }
}

/// A priced event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RatedEvent {
    pub service: ServiceId,
    pub destination: Option<DestinationId>,
    /// Length of the prefix that matched the destination.
    pub prefix_len: u8,
    /// Band at the start of the usage.
    pub band: BandId,
    /// Plan line of the opening rate.
    pub rate_line: u32,
    /// Units reported.
    pub units: u64,
    /// Units after first interval and increments.
    pub charged_units: u64,
    /// Of `charged_units`, those paid by allowances.
    pub allowance_units: u64,
    pub lines: SmallVec<[RatedLine; 3]>,
    pub draws: SmallVec<[AllowanceDraw; 2]>,
    /// Sum of the lines' exact amounts.
    pub exact_amount: Decimal,
    /// The charged amount: `exact_amount` rounded by the plan's rule; the sum of `lines[].amount`.
    pub amount: Decimal,
    /// `amount - exact_amount`.
    pub rounding_adjustment: Decimal,
}

/// Prices one usage event.
pub fn rate(
    plan: &CompiledPlan,
    event: &UsageEvent<'_>,
    allowances: &[AllowanceBalance],
) -> Result<RatedEvent, Unrated> {
    rate_with(plan, event, Paid::Buckets(allowances))
}

/// Prices one usage event of which the first `paid_units` charged units were already paid
/// by allowances (rerating: the allowance draws of the first rating stand, the rest is
/// priced again). The paid units come back as `allowance_units`, with no draws.
pub fn rate_with_paid_units(
    plan: &CompiledPlan,
    event: &UsageEvent<'_>,
    paid_units: u64,
) -> Result<RatedEvent, Unrated> {
    rate_with(plan, event, Paid::Units(paid_units))
}

/// What pays a rated event's units before money does.
enum Paid<'a> {
    /// Allowance buckets, drawn by the plan's rules.
    Buckets(&'a [AllowanceBalance]),
    /// A fixed number of units, paid already.
    Units(u64),
}

fn rate_with(plan: &CompiledPlan, event: &UsageEvent<'_>, paid: Paid<'_>) -> Result<RatedEvent, Unrated> {
    let service = plan.services.get(usize::from(event.service)).ok_or(Unrated::UnknownService)?;
    if event.start_utc_seconds < plan.effective_from_utc_seconds {
        return Err(Unrated::BeforeEffective { effective_from_utc_seconds: plan.effective_from_utc_seconds });
    }
    if event.start_utc_seconds > MAX_START_UTC_SECONDS {
        return Err(Unrated::StartTooLate { latest_utc_seconds: MAX_START_UTC_SECONDS });
    }
    let too_large = Unrated::UsageTooLarge { limit: service.unit.max_per_event(), unit: service.unit };
    if event.units > service.unit.max_per_event() {
        return Err(too_large);
    }
    let timed = service.unit == Unit::Seconds;
    let (destination, prefix_len) = match event.destination {
        None => (None, 0),
        Some(number) => match plan.destination_of(number) {
            PrefixMatch::Found { value, prefix_len } => (Some(value), prefix_len),
            PrefixMatch::NotFound => return Err(Unrated::UnknownDestination),
            PrefixMatch::Malformed { offset } => return Err(Unrated::MalformedDestination { offset }),
        },
    };
    let calendar = plan.calendar();
    let opening = calendar.band_at(event.start_utc_seconds);
    let rate = plan.rate_for(event.service, destination, opening.band).ok_or(Unrated::NoRate { band: opening.band })?;
    // Within the unit's limit and a compiled plan's bounds this always fits; a plan
    // built or loaded otherwise is refused rather than charged a saturated count.
    let charged_units = rate.charged_units(event.units).ok_or(too_large)?;

    let mut lines: SmallVec<[RatedLine; 3]> = SmallVec::new();
    let mut draws: SmallVec<[AllowanceDraw; 2]> = SmallVec::new();
    let allowance_units = match paid {
        Paid::Buckets(balances) => {
            draw_allowances(plan, event, destination, opening.band, charged_units, balances, &mut draws)
        }
        Paid::Units(units) => units.min(charged_units),
    };
    // The draws add up to `allowance_units`, at most `charged_units`: no sum below overflows.
    let mut from_unit = 0;
    for draw in &draws {
        lines.push(RatedLine {
            kind: LineKind::Allowance { bucket: draw.bucket, allowance: draw.allowance, band: opening.band },
            from_unit,
            units: draw.units,
            price: Decimal::ZERO,
            per: rate.per,
            exact_amount: Decimal::ZERO,
            amount: Decimal::ZERO,
        });
        from_unit += draw.units;
    }
    // Money pays from the first unit no allowance paid.
    let mut offset = allowance_units;

    let mut money = Decimal::ZERO;
    let mut band_at = opening;
    let too_late = Unrated::StartTooLate { latest_utc_seconds: MAX_START_UTC_SECONDS };
    while offset < charged_units {
        // Units from `offset` to the end of the band in force there (all of them for
        // a service not counted in seconds).
        let (band, band_rate, band_units) = if timed {
            let at = i64::try_from(offset)
                .ok()
                .and_then(|offset| event.start_utc_seconds.checked_add(offset))
                .ok_or(too_late)?;
            if at >= band_at.until_utc_seconds {
                band_at = calendar.band_at(at);
            }
            let rate = plan
                .rate_for(event.service, destination, band_at.band)
                .ok_or(Unrated::NoRate { band: band_at.band })?;
            let band_units = band_at
                .until_utc_seconds
                .checked_sub(at)
                .and_then(|seconds| u64::try_from(seconds).ok())
                .filter(|seconds| *seconds > 0)
                .ok_or(too_late)?;
            (band_at.band, rate, band_units)
        } else {
            (opening.band, rate, u64::MAX)
        };
        let (step_index, next_step) = band_rate.step_at(offset);
        // `next_step > offset` and every term is at most `charged_units - offset`.
        let units = (charged_units - offset).min(band_units).min(next_step - offset);
        let step = &band_rate.steps[step_index];
        let cost = cost(band_rate, step_index, units)?;
        money = add(money, cost)?;
        let kind = LineKind::Usage { band, step: step_index as u8 };
        match lines.last_mut() {
            Some(last) if last.kind == kind && last.price == step.price && last.per == band_rate.per => {
                last.units += units;
                last.exact_amount = add(last.exact_amount, cost)?;
            }
            _ => lines.push(RatedLine {
                kind,
                from_unit: offset,
                units,
                price: step.price,
                per: band_rate.per,
                exact_amount: cost,
                amount: Decimal::ZERO,
            }),
        }
        offset += units;
    }

    if charged_units > allowance_units {
        if !rate.connect_fee.is_zero() {
            money = add(money, rate.connect_fee)?;
            lines.insert(0, fee_line(LineKind::ConnectFee, rate.connect_fee));
        }
        if money < rate.minimum_charge {
            lines.push(fee_line(LineKind::MinimumCharge, subtract(rate.minimum_charge, money)?));
            money = rate.minimum_charge;
        }
        if let Some(maximum) = rate.maximum_charge.filter(|maximum| money > *maximum) {
            lines.push(fee_line(LineKind::MaximumChargeCap, subtract(maximum, money)?));
        }
    }

    let (exact_amount, amount) = round_lines(plan.rounding, &mut lines).ok_or(Unrated::AmountOverflow)?;
    let rounding_adjustment = subtract(amount, exact_amount)?;
    debug_assert_eq!(lines.iter().try_fold(Decimal::ZERO, |sum, line| sum.checked_add(line.amount)), Some(amount));
    Ok(RatedEvent {
        service: event.service,
        destination,
        prefix_len,
        band: opening.band,
        rate_line: rate.source_line,
        units: event.units,
        charged_units,
        allowance_units,
        lines,
        draws,
        exact_amount,
        amount,
        rounding_adjustment,
    })
}

fn add(a: Decimal, b: Decimal) -> Result<Decimal, Unrated> {
    a.checked_add(b).ok_or(Unrated::AmountOverflow)
}

fn subtract(a: Decimal, b: Decimal) -> Result<Decimal, Unrated> {
    a.checked_sub(b).ok_or(Unrated::AmountOverflow)
}

fn cost(rate: &Rate, step: usize, units: u64) -> Result<Decimal, Unrated> {
    rate.steps[step].cost(units, rate.per).ok_or(Unrated::AmountOverflow)
}

fn fee_line(kind: LineKind, amount: Decimal) -> RatedLine {
    RatedLine {
        kind,
        from_unit: 0,
        units: 0,
        price: Decimal::ZERO,
        per: 1,
        exact_amount: amount,
        amount: Decimal::ZERO,
    }
}

/// Draws up to `charged_units` from the applicable buckets, lowest priority first
/// (ties keep the caller's order), and returns the units drawn.
fn draw_allowances(
    plan: &CompiledPlan,
    event: &UsageEvent<'_>,
    destination: Option<DestinationId>,
    band: BandId,
    charged_units: u64,
    balances: &[AllowanceBalance],
    draws: &mut SmallVec<[AllowanceDraw; 2]>,
) -> u64 {
    if balances.is_empty() || charged_units == 0 {
        return 0;
    }
    let mut usable: SmallVec<[(u32, usize); 8]> = balances
        .iter()
        .enumerate()
        .filter(|(_, balance)| balance.remaining_units > 0)
        .filter_map(|(index, balance)| {
            let allowance = plan.allowances.get(usize::from(balance.allowance))?;
            allowance
                .applies(event.service, destination, event.rating_group, band)
                .then_some((allowance.priority, index))
        })
        .collect();
    usable.sort_unstable();
    let mut drawn = 0;
    for (_, index) in usable {
        if drawn == charged_units {
            break;
        }
        let balance = &balances[index];
        let units = balance.remaining_units.min(charged_units - drawn);
        draws.push(AllowanceDraw { bucket: balance.bucket, allowance: balance.allowance, units });
        drawn += units;
    }
    drawn
}
