//! parse → validate → compile. Every problem found is reported with its file, line,
//! column and field; compilation goes on past the first problem so an operator sees
//! them all at once, and only a plan with no problem compiles.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rust_decimal::Decimal;
use toml::Spanned;

use crate::calendar::{Calendar, Segment, Transition, DAY_NAMES, HOLIDAY, MINUTES_PER_DAY};
use crate::error::{Problem, TariffError};
use crate::money::{currency_minor_units, Rounding, RoundingMode, MAX_ROUNDING_DECIMALS};
use crate::plan::{
    Allowance, BandId, Charge, ChargeKind, CompiledPlan, DestinationId, Period, Proration, Rate, Service, ServiceId,
    Step, Trigger, Unit, NO_RATE,
};
use crate::prefix::{PrefixTrie, MAX_PREFIX_DIGITS};
use crate::source::{PlanSource, RateSource, LANGUAGE_VERSION};

/// Largest plan or prefix file read.
pub const MAX_SOURCE_BYTES: u64 = 256 * 1024 * 1024;
/// Most destination prefixes in one plan.
pub const MAX_PREFIXES: usize = 4_000_000;
/// Most destination groups in one plan (the prefix trie stores 22-bit values).
pub const MAX_DESTINATIONS: usize = crate::prefix::MAX_VALUE as usize;
pub const MAX_SERVICES: usize = 1024;
/// Bands are few by nature; the week table holds a `u16` per band.
pub const MAX_BANDS: usize = 64;
pub const MAX_RATES: usize = 1_000_000;
pub const MAX_STEPS_PER_RATE: usize = 16;
pub const MAX_ALLOWANCES: usize = 1024;
pub const MAX_CHARGES: usize = 1024;
pub const MAX_HOLIDAYS: usize = 10_000;
/// Most cells of the dense service × destination × band rate table.
pub const MAX_RATE_TABLE_CELLS: usize = 64 * 1024 * 1024;
/// UTC-offset history precomputed for the plan's zone runs up to this year.
const OFFSETS_UNTIL_YEAR: i16 = 2200;
const MAX_TRANSITIONS: usize = 4096;

/// Reads, validates and compiles the plan at `path` (and the prefix files it names,
/// relative to its folder).
pub fn compile_file(path: &Path) -> Result<CompiledPlan, TariffError> {
    let text = read_bounded(path)?;
    compile_str(&text, &path.display().to_string(), path.parent())
}

/// Compiles plan text. `file` names it in problems; `base_dir` resolves `prefix_files`
/// (none may be named when it is `None`).
pub fn compile_str(text: &str, file: &str, base_dir: Option<&Path>) -> Result<CompiledPlan, TariffError> {
    let mut ctx = Ctx::new(file, text);
    let source: PlanSource = match toml::from_str(text) {
        Ok(source) => source,
        Err(err) => {
            // serde names a missing field or a wrong type but not the entry it is in.
            let field = err.span().map(|span| path_at(text, span.start)).unwrap_or_default();
            ctx.report(err.span().unwrap_or(0..0), field, err.message().to_owned());
            return Err(ctx.into_error());
        }
    };
    let plan = Compiler { ctx: &mut ctx, base_dir }.compile(&source);
    match plan {
        Some(plan) if ctx.problems.is_empty() => Ok(plan),
        _ => Err(ctx.into_error()),
    }
}

pub(crate) fn read_bounded(path: &Path) -> Result<String, TariffError> {
    let file = path.display().to_string();
    let io = |source| TariffError::Io { file: file.clone(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_SOURCE_BYTES {
        return Err(TariffError::Limit { file, what: "file size in bytes", found: size, limit: MAX_SOURCE_BYTES });
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Problem collection with byte-offset → line/column mapping for one file.
struct Ctx {
    file: String,
    line_starts: Vec<usize>,
    problems: Vec<Problem>,
}

impl Ctx {
    fn new(file: &str, text: &str) -> Ctx {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(at, _)| at + 1)).collect();
        Ctx { file: file.to_owned(), line_starts, problems: Vec::new() }
    }

    fn line_of(&self, offset: usize) -> u32 {
        self.line_starts.partition_point(|&start| start <= offset) as u32
    }

    /// 1-based line and column of a byte offset.
    fn position_of(&self, offset: usize) -> (u32, u32) {
        let line = self.line_of(offset);
        let column = offset - self.line_starts[(line as usize).saturating_sub(1)] + 1;
        (line, column as u32)
    }

    fn report(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let (line, column) = self.position_of(span.start);
        let file = self.file.clone();
        self.report_at(&file, line, column, field, message);
    }

    fn report_in(&mut self, file: &str, line: u32, field: impl Into<String>, message: impl Into<String>) {
        self.report_at(file, line, 0, field, message);
    }

    fn report_at(&mut self, file: &str, line: u32, column: u32, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: file.to_owned(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    fn into_error(mut self) -> TariffError {
        self.problems.sort_by(|a, b| {
            (a.file != self.file, &a.file, a.line, a.column).cmp(&(b.file != self.file, &b.file, b.line, b.column))
        });
        TariffError::Rejected { problems: self.problems }
    }
}

/// Per minute of one day slot: the band and the index of the `[[bands]]` entry that
/// covers it.
type DayPaint = [Option<(BandId, usize)>; MINUTES_PER_DAY as usize];

/// What a `[[rates]]` entry prices: `None` is "any".
type RateKey = (ServiceId, Option<DestinationId>, Option<BandId>);

/// A destination prefix and where it was written.
struct PrefixEntry {
    digits: Box<[u8]>,
    destination: DestinationId,
    /// 0 = the plan file, n = prefix_files[n - 1].
    origin_file: u32,
    /// 1-based line and column of the prefix in its file.
    line: u32,
    column: u32,
}

struct Compiler<'a> {
    ctx: &'a mut Ctx,
    base_dir: Option<&'a Path>,
}

impl Compiler<'_> {
    fn compile(&mut self, source: &PlanSource) -> Option<CompiledPlan> {
        if let Some(format) = &source.format {
            if *format.get_ref() != LANGUAGE_VERSION {
                self.ctx.report(
                    format.span(),
                    "format",
                    format!(
                        "tariff language version {} is not supported; this build reads {LANGUAGE_VERSION}",
                        format.get_ref()
                    ),
                );
            }
        }
        let header = &source.plan;
        let id = header.id.get_ref().clone();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            self.ctx.report(header.id.span(), "plan.id", "must be non-empty ASCII letters, digits, '-', '_' or '.'");
        }
        if *header.version.get_ref() == 0 {
            self.ctx.report(header.version.span(), "plan.version", "must be 1 or more");
        }
        let currency = header.currency.get_ref().clone();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
            self.ctx.report(header.currency.span(), "plan.currency", "must be an ISO 4217 code such as EUR");
        }
        let zone = match TimeZone::get(header.time_zone.get_ref()) {
            Ok(zone) => Some(zone),
            Err(_) => {
                self.ctx.report(
                    header.time_zone.span(),
                    "plan.time_zone",
                    format!(
                        "unknown time zone `{}` (use an IANA name such as Europe/Berlin)",
                        header.time_zone.get_ref()
                    ),
                );
                None
            }
        };
        let effective_from = zone.as_ref().and_then(|zone| self.effective_from(&header.effective_from, zone));
        let rounding = self.rounding(source, &currency);
        let services = self.services(source);
        let rating_groups = rating_group_index(&services);
        let (destinations, prefix_entries) = self.destinations(source);
        let holidays = self.holidays(source);
        let (bands, days) = self.bands(source, !holidays.is_empty());
        let (rates, rate_table) = self.rates(source, &services, &destinations, &bands);
        let allowances = self.allowances(source, &services, &destinations, &bands);
        let charges = self.charges(source);
        let transitions = zone.as_ref().map(offset_history).unwrap_or_default();
        let prefixes = self.prefix_trie(prefix_entries, &destinations, source);

        Some(CompiledPlan {
            id,
            version: *header.version.get_ref(),
            name: header.name.clone(),
            currency,
            time_zone: header.time_zone.get_ref().clone(),
            effective_from_utc_seconds: effective_from?,
            rounding,
            services: services.into_iter().map(|(service, _)| service).collect(),
            rating_groups,
            destinations,
            bands,
            prefixes,
            calendar: Calendar { days, holidays, transitions },
            rates,
            rate_table,
            allowances,
            charges,
        })
    }

    fn effective_from(&mut self, value: &Spanned<String>, zone: &TimeZone) -> Option<i64> {
        let text = value.get_ref();
        if let Ok(timestamp) = text.parse::<Timestamp>() {
            return Some(timestamp.as_second());
        }
        match text.parse::<DateTime>().ok().and_then(|local| local.to_zoned_datetime(zone.clone()).ok()) {
            Some(zoned) => Some(zoned.timestamp().as_second()),
            None => {
                self.ctx.report(
                    value.span(),
                    "plan.effective_from",
                    format!("`{text}` is not a date-time such as 2026-01-01T00:00:00 or 2026-01-01T00:00:00Z"),
                );
                None
            }
        }
    }

    fn rounding(&mut self, source: &PlanSource, currency: &str) -> Rounding {
        let mut rounding = Rounding { mode: RoundingMode::HalfUp, decimals: currency_minor_units(currency) };
        let Some(spec) = &source.rounding else { return rounding };
        if let Some(mode) = &spec.mode {
            match parse_rounding_mode(mode.get_ref()) {
                Some(parsed) => rounding.mode = parsed,
                None => self.ctx.report(
                    mode.span(),
                    "rounding.mode",
                    format!("unknown mode `{}`; use half-up, half-even, up or down", mode.get_ref()),
                ),
            }
        }
        if let Some(decimals) = &spec.decimals {
            if *decimals.get_ref() > MAX_ROUNDING_DECIMALS {
                self.ctx.report(decimals.span(), "rounding.decimals", format!("at most {MAX_ROUNDING_DECIMALS}"));
            } else {
                rounding.decimals = *decimals.get_ref();
            }
        }
        rounding
    }

    /// Services with the 1-based line each was declared on.
    fn services(&mut self, source: &PlanSource) -> Vec<(Service, u32)> {
        if source.services.is_empty() {
            self.ctx.report(0..0, "services", "the plan defines no service");
        }
        if source.services.len() > MAX_SERVICES {
            self.ctx.report(
                source.services[MAX_SERVICES].span(),
                "services",
                format!("more than {MAX_SERVICES} services"),
            );
            return Vec::new();
        }
        let mut out: Vec<(Service, u32)> = Vec::new();
        let mut rating_group_owner: HashMap<u32, usize> = HashMap::new();
        let mut service_id_owner: HashMap<u32, usize> = HashMap::new();
        for (index, entry) in source.services.iter().enumerate() {
            let spec = entry.get_ref();
            let field = |name: &str| format!("services[{index}].{name}");
            let name = spec.name.get_ref();
            if let Some(line) = out.iter().find(|(s, _)| &s.name == name).map(|(_, line)| *line) {
                self.ctx.report(
                    spec.name.span(),
                    field("name"),
                    format!("duplicate service `{name}` (first defined on line {line})"),
                );
            }
            let unit = match spec.unit.get_ref().as_str() {
                "seconds" => Unit::Seconds,
                "bytes" => Unit::Bytes,
                "events" => Unit::Events,
                "units" => Unit::Units,
                other => {
                    self.ctx.report(
                        spec.unit.span(),
                        field("unit"),
                        format!("unknown unit `{other}`; use seconds, bytes, events or units"),
                    );
                    Unit::Units
                }
            };
            for rating_group in &spec.rating_groups {
                if let Some(owner) = rating_group_owner.insert(*rating_group.get_ref(), index) {
                    self.ctx.report(
                        rating_group.span(),
                        field("rating_groups"),
                        format!(
                            "rating group {} is already used by service `{}`",
                            rating_group.get_ref(),
                            source.services[owner].get_ref().name.get_ref()
                        ),
                    );
                }
            }
            for service_id in &spec.service_ids {
                if let Some(owner) = service_id_owner.insert(*service_id.get_ref(), index) {
                    self.ctx.report(
                        service_id.span(),
                        field("service_ids"),
                        format!(
                            "service identifier {} is already used by service `{}`",
                            service_id.get_ref(),
                            source.services[owner].get_ref().name.get_ref()
                        ),
                    );
                }
            }
            let service = Service {
                name: name.clone(),
                unit,
                rating_groups: spec.rating_groups.iter().map(|rg| *rg.get_ref()).collect(),
                service_ids: spec.service_ids.iter().map(|id| *id.get_ref()).collect(),
            };
            out.push((service, self.ctx.line_of(entry.span().start)));
        }
        out
    }

    fn destinations(&mut self, source: &PlanSource) -> (Vec<String>, Vec<PrefixEntry>) {
        let mut names: Vec<String> = Vec::new();
        let mut by_name: HashMap<String, (DestinationId, u32)> = HashMap::new();
        let mut entries = Vec::new();
        for (index, entry) in source.destinations.iter().enumerate() {
            let spec = entry.get_ref();
            let name = spec.name.get_ref();
            let line = self.ctx.line_of(spec.name.span().start);
            if name.is_empty() {
                self.ctx.report(spec.name.span(), format!("destinations[{index}].name"), "must not be empty");
            }
            let id = match by_name.get(name) {
                Some((_, first_line)) => {
                    self.ctx.report(
                        spec.name.span(),
                        format!("destinations[{index}].name"),
                        format!("duplicate destination `{name}` (first defined on line {first_line})"),
                    );
                    continue;
                }
                None => {
                    let id = names.len() as DestinationId;
                    by_name.insert(name.clone(), (id, line));
                    names.push(name.clone());
                    id
                }
            };
            for prefix in &spec.prefixes {
                let (line, column) = self.ctx.position_of(prefix.span().start);
                match check_prefix(prefix.get_ref()) {
                    Ok(()) => entries.push(PrefixEntry {
                        digits: prefix.get_ref().as_bytes().into(),
                        destination: id,
                        origin_file: 0,
                        line,
                        column,
                    }),
                    Err(message) => self.ctx.report(prefix.span(), format!("destinations[{index}].prefixes"), message),
                }
            }
        }
        for (file_index, path) in source.prefix_files.iter().enumerate() {
            self.prefix_file(path, file_index as u32 + 1, &mut names, &mut by_name, &mut entries);
        }
        if names.len() > MAX_DESTINATIONS {
            self.ctx.report(
                0..0,
                "destinations",
                format!("{} destinations; the limit is {MAX_DESTINATIONS}", names.len()),
            );
        }
        (names, entries)
    }

    /// Reads a `prefix,destination` CSV; unknown destination names create groups.
    fn prefix_file(
        &mut self,
        path: &Spanned<String>,
        origin_file: u32,
        names: &mut Vec<String>,
        by_name: &mut HashMap<String, (DestinationId, u32)>,
        entries: &mut Vec<PrefixEntry>,
    ) {
        let Some(base_dir) = self.base_dir else {
            self.ctx.report(
                path.span(),
                "prefix_files",
                "prefix files can only be used when the plan is read from a file",
            );
            return;
        };
        let full = base_dir.join(path.get_ref());
        let display = full.display().to_string();
        let text = match read_bounded(&full) {
            Ok(text) => text,
            Err(err) => {
                self.ctx.report(path.span(), "prefix_files", format!("cannot read: {err}"));
                return;
            }
        };
        for (line_index, line) in text.lines().enumerate() {
            let line_number = line_index as u32 + 1;
            let column = (line.len() - line.trim_start().len()) as u32 + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || (line_index == 0 && line.starts_with("prefix,")) {
                continue;
            }
            let Some((prefix, destination)) = line.split_once(',') else {
                self.ctx.report_in(&display, line_number, "prefix", "expected `prefix,destination`");
                continue;
            };
            let (prefix, destination) = (prefix.trim(), destination.trim());
            if let Err(message) = check_prefix(prefix) {
                self.ctx.report_in(&display, line_number, "prefix", message);
                continue;
            }
            if destination.is_empty() {
                self.ctx.report_in(&display, line_number, "destination", "must not be empty");
                continue;
            }
            let id = match by_name.get(destination) {
                Some((id, _)) => *id,
                None => {
                    let id = names.len() as DestinationId;
                    by_name.insert(destination.to_owned(), (id, 0));
                    names.push(destination.to_owned());
                    id
                }
            };
            entries.push(PrefixEntry {
                digits: prefix.as_bytes().into(),
                destination: id,
                origin_file,
                line: line_number,
                column,
            });
            if entries.len() > MAX_PREFIXES {
                self.ctx.report_in(
                    &display,
                    line_number,
                    "prefix",
                    format!("more than {MAX_PREFIXES} prefixes in the plan"),
                );
                return;
            }
        }
    }

    fn prefix_trie(
        &mut self,
        mut entries: Vec<PrefixEntry>,
        destinations: &[String],
        source: &PlanSource,
    ) -> PrefixTrie {
        if entries.len() > MAX_PREFIXES {
            self.ctx.report(0..0, "destinations", format!("{} prefixes; the limit is {MAX_PREFIXES}", entries.len()));
            return PrefixTrie::default();
        }
        entries.sort_unstable_by(|a, b| {
            a.digits
                .cmp(&b.digits)
                .then(a.origin_file.cmp(&b.origin_file))
                .then(a.line.cmp(&b.line))
                .then(a.column.cmp(&b.column))
        });
        let file_of = |entry: &PrefixEntry| match entry.origin_file {
            0 => self.ctx.file.clone(),
            n => self
                .base_dir
                .map(|dir| dir.join(source.prefix_files[n as usize - 1].get_ref()).display().to_string())
                .unwrap_or_default(),
        };
        let mut duplicates = Vec::new();
        for pair in entries.windows(2) {
            if pair[0].digits == pair[1].digits {
                let (first, second) = (&pair[0], &pair[1]);
                let first_file = file_of(first);
                let prefix = String::from_utf8_lossy(&second.digits).into_owned();
                let (a, b) = (&destinations[first.destination as usize], &destinations[second.destination as usize]);
                let first_at = format!("{first_file}:{}:{}", first.line, first.column);
                let message = if a == b {
                    format!("prefix {prefix} is listed twice for `{a}` (also at {first_at})")
                } else {
                    format!("prefix {prefix} is in two destinations: `{a}` ({first_at}) and `{b}`")
                };
                duplicates.push((file_of(second), second.origin_file, second.line, second.column, message));
            }
        }
        if duplicates.is_empty() {
            let pairs: Vec<(&[u8], u32)> = entries.iter().map(|entry| (&*entry.digits, entry.destination)).collect();
            return PrefixTrie::from_sorted(&pairs);
        }
        // Paths of the plan file's prefixes by position, built only to name duplicates.
        let mut paths: HashMap<(u32, u32), String> = HashMap::new();
        for (index, destination) in source.destinations.iter().enumerate() {
            for (position, prefix) in destination.get_ref().prefixes.iter().enumerate() {
                paths.insert(
                    self.ctx.position_of(prefix.span().start),
                    format!("destinations[{index}].prefixes[{position}]"),
                );
            }
        }
        for (file, origin_file, line, column, message) in duplicates {
            let field = match origin_file {
                0 => paths.remove(&(line, column)).unwrap_or_else(|| "prefixes".to_owned()),
                _ => "prefix".to_owned(),
            };
            self.ctx.report_at(&file, line, column, field, message);
        }
        PrefixTrie::default()
    }

    fn holidays(&mut self, source: &PlanSource) -> Vec<i32> {
        let Some(calendar) = &source.calendar else { return Vec::new() };
        if calendar.holidays.len() > MAX_HOLIDAYS {
            self.ctx.report(
                calendar.holidays[MAX_HOLIDAYS].span(),
                "calendar.holidays",
                format!("more than {MAX_HOLIDAYS} holidays"),
            );
            return Vec::new();
        }
        let mut days = Vec::new();
        for holiday in &calendar.holidays {
            match holiday.get_ref().parse::<Date>() {
                Ok(date) => days.push(days_since_epoch(date)),
                Err(_) => self.ctx.report(
                    holiday.span(),
                    "calendar.holidays",
                    format!("`{}` is not a date YYYY-MM-DD", holiday.get_ref()),
                ),
            }
        }
        days.sort_unstable();
        days.dedup();
        days
    }

    /// Band names and the eight day slots of segments.
    fn bands(&mut self, source: &PlanSource, has_holidays: bool) -> (Vec<String>, Vec<Vec<Segment>>) {
        if source.bands.is_empty() {
            let all = vec![Segment { start_minute: 0, end_minute: MINUTES_PER_DAY, band: 0 }];
            let mut days = vec![all.clone(); 7];
            days.push(if has_holidays { all } else { Vec::new() });
            return (vec!["all".to_owned()], days);
        }
        let mut names: Vec<String> = Vec::new();
        // Per slot and minute: (band, index of the [[bands]] entry that painted it).
        let mut painted: Vec<DayPaint> = vec![[None; MINUTES_PER_DAY as usize]; 8];
        for (index, entry) in source.bands.iter().enumerate() {
            let spec = entry.get_ref();
            let band = match names.iter().position(|n| n == spec.name.get_ref()) {
                Some(band) => band as BandId,
                None if names.len() >= MAX_BANDS => {
                    self.ctx.report(
                        spec.name.span(),
                        format!("bands[{index}].name"),
                        format!("more than {MAX_BANDS} bands"),
                    );
                    continue;
                }
                None => {
                    names.push(spec.name.get_ref().clone());
                    (names.len() - 1) as BandId
                }
            };
            let Some(slots) = self.parse_days(&spec.days, index) else { continue };
            let from = self.parse_minute(spec.from.as_ref(), 0, &format!("bands[{index}].from"));
            let to = self.parse_minute(spec.to.as_ref(), MINUTES_PER_DAY, &format!("bands[{index}].to"));
            let (Some(from), Some(to)) = (from, to) else { continue };
            if from == to {
                let span = spec.from.as_ref().map_or(entry.span(), Spanned::span);
                self.ctx.report(
                    span,
                    format!("bands[{index}].from"),
                    "`from` equals `to`: the band would be empty (omit both for a whole day)",
                );
                continue;
            }
            let ranges: [Range<u16>; 2] = if from < to { [from..to, 0..0] } else { [from..MINUTES_PER_DAY, 0..to] };
            let mut overlap_reported = false;
            for slot in slots {
                for minute in ranges.iter().flat_map(Clone::clone) {
                    match painted[slot][minute as usize] {
                        None => painted[slot][minute as usize] = Some((band, index)),
                        Some((other_band, other)) if !overlap_reported => {
                            overlap_reported = true;
                            let other_line = self.ctx.line_of(source.bands[other].span().start);
                            self.ctx.report(
                                entry.span(),
                                format!("bands[{index}]"),
                                format!(
                                    "band `{}` overlaps band `{}` (line {other_line}) on {} at {}",
                                    spec.name.get_ref(),
                                    names[other_band as usize],
                                    DAY_NAMES[slot],
                                    hhmm(minute)
                                ),
                            );
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        let holiday_banded = painted[HOLIDAY].iter().any(Option::is_some);
        if has_holidays && !holiday_banded {
            let first_holiday = source.calendar.as_ref().and_then(|c| c.holidays.first()).map_or(0..0, Spanned::span);
            self.ctx.report(
                first_holiday,
                "calendar.holidays",
                "holidays are listed but no band covers the day `holiday`",
            );
        }
        let mut days = Vec::with_capacity(8);
        for (slot, minutes) in painted.iter().enumerate() {
            if slot == HOLIDAY && !holiday_banded {
                days.push(Vec::new());
                continue;
            }
            let mut segments: Vec<Segment> = Vec::new();
            let mut minute = 0;
            while minute < MINUTES_PER_DAY {
                if let Some((band, _)) = minutes[minute as usize] {
                    match segments.last_mut() {
                        Some(last) if last.band == band => last.end_minute = minute + 1,
                        _ => segments.push(Segment { start_minute: minute, end_minute: minute + 1, band }),
                    }
                    minute += 1;
                    continue;
                }
                let gap_start = minute;
                while minute < MINUTES_PER_DAY && minutes[minute as usize].is_none() {
                    minute += 1;
                }
                let gap = format!("no band covers {} {}–{}", DAY_NAMES[slot], hhmm(gap_start), hhmm(minute));
                // Reported at the band the gap follows (or, on a holiday, precedes).
                match gap_neighbour(&painted, slot, gap_start, minute) {
                    Some(((band, index), side)) => self.ctx.report(
                        source.bands[index].span(),
                        format!("bands[{index}]"),
                        format!("{gap} ({side} band `{}`)", names[band as usize]),
                    ),
                    None => self.ctx.report(source.bands[0].span(), "bands", gap),
                }
            }
            days.push(segments);
        }
        (names, days)
    }

    fn parse_days(&mut self, days: &Spanned<Vec<String>>, index: usize) -> Option<Vec<usize>> {
        let mut slots = Vec::new();
        for day in days.get_ref() {
            let slot = |name: &str| DAY_NAMES.iter().position(|n| *n == name);
            let parsed = match day.split_once('-') {
                Some((from, to)) => match (slot(from), slot(to)) {
                    (Some(from), Some(to)) if from <= to && to < HOLIDAY => Some((from..=to).collect()),
                    _ => None,
                },
                None => slot(day).map(|s| vec![s]),
            };
            match parsed {
                Some(parsed) => slots.extend(parsed),
                None => {
                    self.ctx.report(
                        days.span(),
                        format!("bands[{index}].days"),
                        format!("`{day}` is not a day (mon … sun, a range such as mon-fri, or holiday)"),
                    );
                    return None;
                }
            }
        }
        if slots.is_empty() {
            self.ctx.report(days.span(), format!("bands[{index}].days"), "lists no day");
            return None;
        }
        slots.sort_unstable();
        slots.dedup();
        Some(slots)
    }

    fn parse_minute(&mut self, value: Option<&Spanned<String>>, default: u16, field: &str) -> Option<u16> {
        let Some(value) = value else { return Some(default) };
        let parsed = value.get_ref().split_once(':').and_then(|(h, m)| {
            let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
            (m < 60 && h * 60 + m <= MINUTES_PER_DAY && value.get_ref().len() == 5).then_some(h * 60 + m)
        });
        if parsed.is_none() {
            self.ctx.report(
                value.span(),
                field,
                format!("`{}` is not a time HH:MM between 00:00 and 24:00", value.get_ref()),
            );
        }
        parsed
    }

    fn rates(
        &mut self,
        source: &PlanSource,
        services: &[(Service, u32)],
        destinations: &[String],
        bands: &[String],
    ) -> (Vec<Rate>, Vec<u32>) {
        if source.rates.len() > MAX_RATES {
            self.ctx.report(source.rates[MAX_RATES].span(), "rates", format!("more than {MAX_RATES} rates"));
            return (Vec::new(), Vec::new());
        }
        let destination_index: HashMap<&str, DestinationId> =
            destinations.iter().enumerate().map(|(i, name)| (name.as_str(), i as DestinationId)).collect();
        let mut rates = Vec::new();
        // (service, destination, band) → (rate index, plan line).
        let mut by_key: HashMap<RateKey, (u32, u32)> = HashMap::new();
        for (index, entry) in source.rates.iter().enumerate() {
            let spec = entry.get_ref();
            let line = self.ctx.line_of(entry.span().start);
            let service = self.lookup(
                &spec.service,
                services.iter().map(|(s, _)| s.name.as_str()),
                &format!("rates[{index}].service"),
                "service",
            );
            let destination = match &spec.destination {
                Some(name) => match destination_index.get(name.get_ref().as_str()) {
                    Some(id) => Some(Some(*id)),
                    None => {
                        self.ctx.report(
                            name.span(),
                            format!("rates[{index}].destination"),
                            format!("unknown destination `{}`", name.get_ref()),
                        );
                        None
                    }
                },
                None => Some(None),
            };
            let band = match &spec.band {
                Some(name) => self
                    .lookup(name, bands.iter().map(String::as_str), &format!("rates[{index}].band"), "band")
                    .map(|b| Some(b as BandId)),
                None => Some(None),
            };
            if let Some(service) = service {
                let unit = services[service].0.unit;
                let limit = unit.max_per_event();
                for (name, value) in [("first_interval", &spec.first_interval_units), ("increment", &spec.increment)] {
                    if let Some(value) = value.as_ref().filter(|value| *value.get_ref() > limit) {
                        self.ctx.report(
                            value.span(),
                            format!("rates[{index}].{name}"),
                            format!("more than {limit} {}, the most one event may use", unit.name()),
                        );
                    }
                }
            }
            let Some(rate) = self.rate(spec, index, line) else { continue };
            let (Some(service), Some(destination), Some(band)) = (service, destination, band) else { continue };
            let key = (service as ServiceId, destination, band);
            if let Some((_, first_line)) = by_key.get(&key) {
                self.ctx.report(
                    entry.span(),
                    format!("rates[{index}]"),
                    format!(
                        "a rate for the same service, destination and band is already defined on line {first_line}"
                    ),
                );
                continue;
            }
            by_key.insert(key, (rates.len() as u32, line));
            rates.push(rate);
        }
        let cells = services.len().saturating_mul(destinations.len() + 1).saturating_mul(bands.len().max(1));
        if cells > MAX_RATE_TABLE_CELLS {
            self.ctx.report(
                0..0,
                "rates",
                format!("services × destinations × bands is {cells}; the limit is {MAX_RATE_TABLE_CELLS}"),
            );
            return (rates, Vec::new());
        }
        let mut table = Vec::with_capacity(cells);
        let find = |key| by_key.get(&key).map(|(rate, _)| *rate);
        for service in 0..services.len() as ServiceId {
            for destination_slot in 0..=destinations.len() {
                let destination = destination_slot.checked_sub(1).map(|d| d as DestinationId);
                for band in 0..bands.len() as BandId {
                    let rate = destination
                        .and_then(|d| find((service, Some(d), Some(band))).or_else(|| find((service, Some(d), None))))
                        .or_else(|| find((service, None, Some(band))))
                        .or_else(|| find((service, None, None)))
                        .unwrap_or(NO_RATE);
                    table.push(rate);
                }
            }
        }
        (rates, table)
    }

    fn rate(&mut self, spec: &RateSource, index: usize, line: u32) -> Option<Rate> {
        let field = |name: &str| format!("rates[{index}].{name}");
        let price = self.money(&spec.price, &field("price"));
        let connect_fee =
            spec.connect_fee.as_ref().map_or(Some(Decimal::ZERO), |fee| self.money(fee, &field("connect_fee")));
        let minimum_charge =
            spec.minimum_charge.as_ref().map_or(Some(Decimal::ZERO), |min| self.money(min, &field("minimum_charge")));
        let maximum_charge = match &spec.maximum_charge {
            Some(max) => self.money(max, &field("maximum_charge")).map(Some),
            None => Some(None),
        };
        let increment = spec.increment.as_ref().map_or(1, |i| *i.get_ref());
        if let Some(value) = spec.increment.as_ref().filter(|i| *i.get_ref() == 0) {
            self.ctx.report(
                value.span(),
                field("increment"),
                "a zero increment would never charge usage past the first interval",
            );
        }
        let first_interval_units = spec.first_interval_units.as_ref().map_or(increment, |f| *f.get_ref());
        let per = spec.per.as_ref().map_or(1, |p| *p.get_ref());
        if let Some(value) = spec.per.as_ref().filter(|p| *p.get_ref() == 0) {
            self.ctx.report(value.span(), field("per"), "must be 1 or more");
        }
        if spec.steps.len() > MAX_STEPS_PER_RATE {
            self.ctx.report(
                spec.steps[MAX_STEPS_PER_RATE].span(),
                field("steps"),
                format!("more than {MAX_STEPS_PER_RATE} steps"),
            );
        }
        let mut steps = vec![(0u64, price)];
        for (step_index, step) in spec.steps.iter().enumerate() {
            let step = step.get_ref();
            let from = *step.from_units.get_ref();
            if from <= steps.last().map_or(0, |(from, _)| *from) {
                self.ctx.report(
                    step.from_units.span(),
                    format!("rates[{index}].steps[{step_index}].from"),
                    "step starts must be above 0 and increase",
                );
            }
            steps.push((from, self.money(&step.price, &format!("rates[{index}].steps[{step_index}].price"))));
        }
        let (Some(connect_fee), Some(minimum_charge), Some(maximum_charge)) =
            (connect_fee, minimum_charge, maximum_charge)
        else {
            return None;
        };
        if let (Some(max), Some(span)) = (maximum_charge, spec.maximum_charge.as_ref().map(Spanned::span)) {
            if max < minimum_charge {
                self.ctx.report(span, field("maximum_charge"), "is below minimum_charge");
            }
        }
        if increment == 0 || per == 0 {
            return None;
        }
        let steps = steps
            .into_iter()
            .map(|(from_units, price)| {
                price.map(|price| Step { from_units, price, unit_price: exact_quotient(price, per) })
            })
            .collect::<Option<Vec<Step>>>()?;
        Some(Rate {
            source_line: line,
            connect_fee,
            first_interval_units,
            increment,
            per,
            steps,
            minimum_charge,
            maximum_charge,
        })
    }

    fn allowances(
        &mut self,
        source: &PlanSource,
        services: &[(Service, u32)],
        destinations: &[String],
        bands: &[String],
    ) -> Vec<Allowance> {
        if source.allowances.len() > MAX_ALLOWANCES {
            self.ctx.report(
                source.allowances[MAX_ALLOWANCES].span(),
                "allowances",
                format!("more than {MAX_ALLOWANCES} allowances"),
            );
            return Vec::new();
        }
        let destination_index: HashMap<&str, DestinationId> =
            destinations.iter().enumerate().map(|(i, name)| (name.as_str(), i as DestinationId)).collect();
        let mut out: Vec<Allowance> = Vec::new();
        for (index, entry) in source.allowances.iter().enumerate() {
            let spec = entry.get_ref();
            let field = |name: &str| format!("allowances[{index}].{name}");
            if out.iter().any(|a| &a.name == spec.name.get_ref()) {
                self.ctx.report(
                    spec.name.span(),
                    field("name"),
                    format!("duplicate allowance `{}`", spec.name.get_ref()),
                );
            }
            let service =
                self.lookup(&spec.service, services.iter().map(|(s, _)| s.name.as_str()), &field("service"), "service");
            let unit = service.map(|s| services[s].0.unit);
            let multiplier = unit.and_then(|unit| match unit_multiplier(unit, spec.unit.get_ref()) {
                Some(multiplier) => Some(multiplier),
                None => {
                    self.ctx.report(
                        spec.unit.span(),
                        field("unit"),
                        format!("`{}` does not measure {}", spec.unit.get_ref(), unit.name()),
                    );
                    None
                }
            });
            if *spec.amount.get_ref() == 0 {
                self.ctx.report(spec.amount.span(), field("amount"), "must be 1 or more");
            }
            let units = multiplier.and_then(|m| spec.amount.get_ref().checked_mul(m));
            if multiplier.is_some() && units.is_none() {
                self.ctx.report(spec.amount.span(), field("amount"), "too large");
            }
            let mut destination_ids = Vec::new();
            for name in &spec.destinations {
                match destination_index.get(name.get_ref().as_str()) {
                    Some(id) => destination_ids.push(*id),
                    None => self.ctx.report(
                        name.span(),
                        field("destinations"),
                        format!("unknown destination `{}`", name.get_ref()),
                    ),
                }
            }
            let mut band_ids = Vec::new();
            for name in &spec.bands {
                if let Some(band) = self.lookup(name, bands.iter().map(String::as_str), &field("bands"), "band") {
                    band_ids.push(band as BandId);
                }
            }
            if let Some(service) = service {
                for rating_group in &spec.rating_groups {
                    if !services[service].0.rating_groups.contains(rating_group.get_ref()) {
                        self.ctx.report(
                            rating_group.span(),
                            field("rating_groups"),
                            format!(
                                "rating group {} does not belong to service `{}`",
                                rating_group.get_ref(),
                                services[service].0.name
                            ),
                        );
                    }
                }
            }
            let period = match &spec.period {
                Some(period) => self.period(period, &field("period"), true),
                None => Some(Period::Monthly),
            };
            let (Some(service), Some(units), Some(period)) = (service, units, period) else { continue };
            out.push(Allowance {
                name: spec.name.get_ref().clone(),
                service: service as ServiceId,
                units,
                destinations: destination_ids,
                rating_groups: spec.rating_groups.iter().map(|rg| *rg.get_ref()).collect(),
                bands: band_ids,
                priority: spec.priority,
                period,
            });
        }
        out
    }

    fn charges(&mut self, source: &PlanSource) -> Vec<Charge> {
        if source.charges.len() > MAX_CHARGES {
            self.ctx.report(source.charges[MAX_CHARGES].span(), "charges", format!("more than {MAX_CHARGES} charges"));
            return Vec::new();
        }
        let mut out: Vec<Charge> = Vec::new();
        for (index, entry) in source.charges.iter().enumerate() {
            let spec = entry.get_ref();
            let field = |name: &str| format!("charges[{index}].{name}");
            if out.iter().any(|c| &c.name == spec.name.get_ref()) {
                self.ctx.report(spec.name.span(), field("name"), format!("duplicate charge `{}`", spec.name.get_ref()));
            }
            let amount = self.money(&spec.amount, &field("amount"));
            let kind = match spec.kind.get_ref().as_str() {
                "recurring" => {
                    let period = match &spec.period {
                        Some(period) => self.period(period, &field("period"), false),
                        None => {
                            self.ctx.report(spec.kind.span(), field("period"), "a recurring charge needs a period");
                            None
                        }
                    };
                    let proration = match spec.proration.as_ref().map(|p| (p, p.get_ref().as_str())) {
                        None | Some((_, "daily")) => Some(Proration::Daily),
                        Some((_, "none")) => Some(Proration::None),
                        Some((_, "seconds")) => Some(Proration::Seconds),
                        Some((p, other)) => {
                            self.ctx.report(
                                p.span(),
                                field("proration"),
                                format!("unknown proration `{other}`; use none, daily or seconds"),
                            );
                            None
                        }
                    };
                    let in_advance = match spec.billed.as_ref().map(|b| (b, b.get_ref().as_str())) {
                        None | Some((_, "advance")) => Some(true),
                        Some((_, "arrears")) => Some(false),
                        Some((b, other)) => {
                            self.ctx.report(
                                b.span(),
                                field("billed"),
                                format!("unknown `{other}`; use advance or arrears"),
                            );
                            None
                        }
                    };
                    match (period, proration, in_advance) {
                        (Some(period), Some(proration), Some(in_advance)) => {
                            Some(ChargeKind::Recurring { period, proration, in_advance })
                        }
                        _ => None,
                    }
                }
                "one-off" => match spec.trigger.as_ref().map(|t| (t, t.get_ref().as_str())) {
                    None | Some((_, "activation")) => Some(ChargeKind::OneOff { trigger: Trigger::Activation }),
                    Some((_, "termination")) => Some(ChargeKind::OneOff { trigger: Trigger::Termination }),
                    Some((_, "manual")) => Some(ChargeKind::OneOff { trigger: Trigger::Manual }),
                    Some((t, other)) => {
                        self.ctx.report(
                            t.span(),
                            field("trigger"),
                            format!("unknown trigger `{other}`; use activation, termination or manual"),
                        );
                        None
                    }
                },
                other => {
                    self.ctx.report(
                        spec.kind.span(),
                        field("type"),
                        format!("unknown charge type `{other}`; use recurring or one-off"),
                    );
                    None
                }
            };
            if let (Some(amount), Some(kind)) = (amount, kind) {
                out.push(Charge { name: spec.name.get_ref().clone(), amount, kind });
            }
        }
        out
    }

    fn period(&mut self, value: &Spanned<String>, field: &str, allow_once: bool) -> Option<Period> {
        match value.get_ref().as_str() {
            "daily" => Some(Period::Daily),
            "weekly" => Some(Period::Weekly),
            "monthly" => Some(Period::Monthly),
            "yearly" => Some(Period::Yearly),
            "once" if allow_once => Some(Period::Once),
            other => {
                self.ctx.report(
                    value.span(),
                    field,
                    format!(
                        "unknown period `{other}`; use daily, weekly, monthly, yearly{}",
                        if allow_once { " or once" } else { "" }
                    ),
                );
                None
            }
        }
    }

    /// The position of `name` among `names`, or a problem naming it as an unknown `kind`.
    fn lookup<'n>(
        &mut self,
        name: &Spanned<String>,
        names: impl Iterator<Item = &'n str>,
        field: &str,
        kind: &str,
    ) -> Option<usize> {
        let mut names = names;
        let found = names.position(|n| n == name.get_ref());
        if found.is_none() {
            self.ctx.report(name.span(), field, format!("unknown {kind} `{}`", name.get_ref()));
        }
        found
    }

    /// An exact, non-negative decimal written as a string.
    fn money(&mut self, value: &Spanned<String>, field: &str) -> Option<Decimal> {
        match Decimal::from_str_exact(value.get_ref()) {
            Ok(amount) if amount.is_sign_negative() && !amount.is_zero() => {
                self.ctx.report(value.span(), field, format!("negative amount {amount}"));
                None
            }
            Ok(amount) => Some(amount.normalize()),
            Err(_) => {
                self.ctx.report(
                    value.span(),
                    field,
                    format!("`{}` is not a decimal amount such as \"0.09\"", value.get_ref()),
                );
                None
            }
        }
    }
}

/// The band painted nearest before the gap `[start, end)` of day `slot` (going back
/// through the week, or through the holiday), else nearest after it, with `"after"` or
/// `"before"`; `None` when no minute is painted.
fn gap_neighbour(painted: &[DayPaint], slot: usize, start: u16, end: u16) -> Option<((BandId, usize), &'static str)> {
    let day = usize::from(MINUTES_PER_DAY);
    let before = if slot == HOLIDAY {
        painted[HOLIDAY][..usize::from(start)].iter().rev().find_map(|m| *m)
    } else {
        // Minutes of the week before the gap, latest first, wrapping from Monday to Sunday.
        let week_minute = slot * day + usize::from(start);
        (1..=7 * day).map(|back| (week_minute + 7 * day - back) % (7 * day)).find_map(|m| painted[m / day][m % day])
    };
    if let Some(band) = before {
        return Some((band, "after"));
    }
    painted[slot][usize::from(end)..].iter().find_map(|m| *m).map(|band| (band, "before"))
}

/// The dotted path (`rates[0].increment`, `rates[0]`, `plan`) of the deepest key or array
/// entry of `text` at byte `offset`: what serde leaves out of a missing-field or
/// wrong-type error. Empty when the text does not parse.
fn path_at(text: &str, offset: usize) -> String {
    let Ok(root) = toml::de::DeTable::parse(text) else { return String::new() };
    let mut path = String::new();
    if table_path_at(root.get_ref(), offset, &mut path) {
        path
    } else {
        String::new()
    }
}

fn table_path_at(table: &toml::de::DeTable<'_>, offset: usize, path: &mut String) -> bool {
    for (key, value) in table {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key.get_ref());
        if key.span().contains(&offset) || value_path_at(value, offset, path) {
            return true;
        }
        path.truncate(len);
    }
    false
}

fn value_path_at(value: &Spanned<toml::de::DeValue<'_>>, offset: usize, path: &mut String) -> bool {
    // Children first: the span of a `[table]` or `[[array]]` entry is its header only.
    let in_child = match value.get_ref() {
        toml::de::DeValue::Table(table) => table_path_at(table, offset, path),
        toml::de::DeValue::Array(array) => array.iter().enumerate().any(|(index, item)| {
            let len = path.len();
            path.push_str(&format!("[{index}]"));
            let found = value_path_at(item, offset, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        _ => false,
    };
    in_child || value.span().contains(&offset)
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_DIGITS || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        Err(format!("prefix `{prefix}` must be 1 to {MAX_PREFIX_DIGITS} digits"))
    } else {
        Ok(())
    }
}

fn rating_group_index(services: &[(Service, u32)]) -> Vec<(u32, ServiceId)> {
    let mut index: Vec<(u32, ServiceId)> = services
        .iter()
        .enumerate()
        .flat_map(|(id, (service, _))| service.rating_groups.iter().map(move |rg| (*rg, id as ServiceId)))
        .collect();
    index.sort_unstable();
    index.dedup_by_key(|(rg, _)| *rg);
    index
}

fn parse_rounding_mode(name: &str) -> Option<RoundingMode> {
    [RoundingMode::HalfUp, RoundingMode::HalfEven, RoundingMode::Up, RoundingMode::Down]
        .into_iter()
        .find(|mode| mode.name() == name)
}

/// How many base units one `unit` is, for a service measured in `service_unit`.
fn unit_multiplier(service_unit: Unit, unit: &str) -> Option<u64> {
    match (service_unit, unit) {
        (Unit::Seconds, "seconds") => Some(1),
        (Unit::Seconds, "minutes") => Some(60),
        (Unit::Seconds, "hours") => Some(3600),
        (Unit::Bytes, "bytes") => Some(1),
        (Unit::Bytes, "KB") => Some(1 << 10),
        (Unit::Bytes, "MB") => Some(1 << 20),
        (Unit::Bytes, "GB") => Some(1 << 30),
        (Unit::Events, "events") | (Unit::Units, "units") => Some(1),
        _ => None,
    }
}

/// `price / per` when it is exactly representable.
fn exact_quotient(price: Decimal, per: u64) -> Option<Decimal> {
    let per = Decimal::from(per);
    let quotient = price.checked_div(per)?;
    (quotient.checked_mul(per)? == price).then_some(quotient)
}

fn days_since_epoch(date: Date) -> i32 {
    let seconds = date.to_zoned_datetime(TimeZone::UTC).map_or(0, |zoned| zoned.timestamp().as_second());
    seconds.div_euclid(86_400) as i32
}

fn hhmm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// The zone's UTC offsets from 1900 until [`OFFSETS_UNTIL_YEAR`].
fn offset_history(zone: &TimeZone) -> Vec<Transition> {
    let start = Date::constant(1900, 1, 1)
        .to_zoned_datetime(TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let end = Date::constant(OFFSETS_UNTIL_YEAR, 1, 1)
        .to_zoned_datetime(TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MAX);
    let mut transitions =
        vec![Transition { at_utc_seconds: i64::MIN, offset_seconds: zone.to_offset(start).seconds() }];
    for transition in zone.following(start) {
        if transition.timestamp() >= end || transitions.len() >= MAX_TRANSITIONS {
            break;
        }
        let offset_seconds = transition.offset().seconds();
        if transitions.last().is_some_and(|last| last.offset_seconds == offset_seconds) {
            continue;
        }
        transitions.push(Transition { at_utc_seconds: transition.timestamp().as_second(), offset_seconds });
    }
    transitions
}

impl FromStr for RoundingMode {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        parse_rounding_mode(name).ok_or_else(|| format!("unknown rounding mode `{name}`"))
    }
}
