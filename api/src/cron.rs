//! Cron schedules as the CronJob controller evaluates them: `github.com/robfig/cron/v3`'s
//! standard parser (`ParseStandard`), which kube-controller-manager uses. Five fields
//! (minute, hour, day of month, month, day of week) with lists, ranges, steps, `*` and `?`,
//! month and weekday names; the descriptors `@yearly` `@annually` `@monthly` `@weekly`
//! `@daily` `@midnight` `@hourly`; and `@every <duration>`, which `ParseStandard` accepts
//! too (so CronJob validation lets it through, and the controller runs it). A `TZ=` or
//! `CRON_TZ=` prefix names the zone, as robfig allows (CronJob validation rejects it for
//! new objects in favour of `spec.timeZone`).
//!
//! Times are found in a zone from the host's IANA database (`jiff`), as robfig finds them:
//! a wall time the zone skips (spring forward) does not run that day, and one the zone
//! repeats (fall back) runs at both of its instants, so `*/5 * * * *` keeps running every
//! five minutes through the repeated hour. Pure: no clock is read here.

use jiff::{
    SignedDuration, Timestamp, ToSpan as _,
    civil::{Date, DateTime},
    tz::TimeZone,
};

/// Why a schedule cannot be used, in the words of robfig's parser (which Kubernetes quotes)
/// or of Go's `time.LoadLocation`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The schedule does not parse.
    #[error("{0}")]
    Syntax(String),
    /// The time zone is not in the zone database.
    #[error("unknown time zone {0}")]
    UnknownTimeZone(String),
}

/// A parsed schedule and the zone its wall times are in.
#[derive(Clone, Debug)]
pub struct Schedule {
    rule: Rule,
    zone: TimeZone,
}

#[derive(Clone, Debug)]
enum Rule {
    Fields(Fields),
    /// `@every`: a constant delay, whole seconds, at least one.
    Every(SignedDuration),
}

/// One bit per allowed value of each field; `*_star` records that the day field began
/// with `*` or `?` (robfig's star bit), which decides how the two day fields combine.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    dom_star: bool,
    dow_star: bool,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// How far ahead [`Schedule::next`] looks before deciding a schedule never fires
/// ("0 0 30 2 *"), as robfig gives up after five years.
const SEARCH_YEARS: i16 = 5;

/// The zone named `name` (an IANA name; empty or `UTC` is UTC). CronJobs without
/// `spec.timeZone` use the controller's local zone, which Strait takes to be UTC so that
/// schedules do not depend on the host the control plane runs on.
pub fn zone(name: &str) -> Result<TimeZone, Error> {
    match name {
        "" | "UTC" => Ok(TimeZone::UTC),
        // Go's LoadLocation("Local") is the process's zone: UTC here, as above.
        "Local" => Ok(TimeZone::UTC),
        _ => TimeZone::get(name).map_err(|_| Error::UnknownTimeZone(name.to_owned())),
    }
}

impl Schedule {
    /// Parses `spec` with wall times in `zone` (a `TZ=` prefix in `spec` overrides it).
    pub fn parse(spec: &str, zone: TimeZone) -> Result<Self, Error> {
        let syntax = |m: String| Error::Syntax(m);
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(syntax("empty spec string".to_owned()));
        }
        let (spec, zone) = match spec
            .strip_prefix("TZ=")
            .or_else(|| spec.strip_prefix("CRON_TZ="))
        {
            Some(rest) => {
                let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                let zone = self::zone(name)
                    .map_err(|e| syntax(format!("provided bad location {name}: {e}")))?;
                (rest.trim(), zone)
            }
            None => (spec, zone),
        };
        let rule = match spec.strip_prefix('@') {
            Some(descriptor) => descriptor_rule(spec, descriptor)?,
            None => Rule::Fields(parse_fields(spec)?),
        };
        Ok(Self { rule, zone })
    }

    /// The first time the schedule fires strictly after `after`, or `None` if it fires
    /// in none of the next five years.
    pub fn next(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.rule {
            Rule::Every(delay) => {
                // robfig rounds to the second: the next run is `delay` after the
                // whole second `after` falls in.
                let whole = Timestamp::from_second(after.as_second()).ok()?;
                whole.checked_add(*delay).ok()
            }
            Rule::Fields(fields) => self.next_by_fields(fields, after),
        }
    }

    /// The latest time the schedule fired at or before `now`, not earlier than `after`
    /// (exclusive), with how many times it fired in `(after, now]`, counted up to
    /// `limit + 1` (more than `limit` is all a caller needs to know).
    pub fn most_recent(
        &self,
        after: Timestamp,
        now: Timestamp,
        limit: usize,
    ) -> Option<(Timestamp, usize)> {
        let mut count = 0;
        let mut latest = None;
        let mut t = after;
        while let Some(next) = self.next(t).filter(|n| *n <= now) {
            count += 1;
            latest = Some(next);
            t = next;
            if count > limit {
                // Too many to walk: find the latest by looking back from `now` in a
                // doubling window, which ends once the window holds any run.
                return Some((self.latest_before(next, now), count));
            }
        }
        latest.map(|l| (l, count))
    }

    /// The latest run in `(floor, now]`, knowing `floor`'s successor run is at most `now`.
    fn latest_before(&self, floor: Timestamp, now: Timestamp) -> Timestamp {
        let mut window = SignedDuration::from_mins(2);
        let mut latest = floor;
        loop {
            let start = now.checked_sub(window).unwrap_or(floor).max(floor);
            let mut t = start;
            while let Some(next) = self.next(t).filter(|n| *n <= now) {
                latest = next;
                t = next;
            }
            if latest > start || start == floor {
                return latest;
            }
            window = window.saturating_mul(2);
        }
    }

    fn next_by_fields(&self, f: &Fields, after: Timestamp) -> Option<Timestamp> {
        // Walk the zone's stretches of constant offset from `after` on. Within one, wall
        // time and instants move together, so its first matching wall time is the answer.
        // As with robfig, a wall time a transition skips never runs, and one a transition
        // repeats runs at each of its instants (they are distinct minutes).
        let give_up = self
            .zone
            .to_offset(after)
            .to_datetime(after)
            .year()
            .checked_add(SEARCH_YEARS)?;
        let mut from = after;
        let mut inclusive = false;
        loop {
            let offset = self.zone.to_offset(from);
            let end = self
                .zone
                .following(from)
                .map(|t| t.timestamp())
                .find(|t| *t > from);
            let wall = offset.to_datetime(from);
            let minute = wall.date().at(wall.hour(), wall.minute(), 0, 0);
            let start = if inclusive && minute == wall {
                minute
            } else {
                minute.checked_add(1.minute()).ok()?
            };
            let bound = end.map(|e| offset.to_datetime(e));
            if let Some(found) = next_wall(f, start, bound, give_up) {
                return offset.to_timestamp(found).ok();
            }
            // Nothing before the transition (or ever): go on from it, in its new offset.
            from = end?;
            if offset.to_datetime(from).year() > give_up {
                return None;
            }
            inclusive = true;
        }
    }
}

/// The first wall time from `t` on (and before `bound`) that the fields match, looking no
/// further than the end of year `give_up`.
fn next_wall(
    f: &Fields,
    mut t: DateTime,
    bound: Option<DateTime>,
    give_up: i16,
) -> Option<DateTime> {
    loop {
        if t.year() > give_up || bound.is_some_and(|b| t >= b) {
            return None;
        }
        if !bit(f.month, t.month()) {
            t = first_of_next_month(t.date())?;
        } else if !day_matches(f, t.date()) {
            t = t.date().tomorrow().ok()?.at(0, 0, 0, 0);
        } else if !bit(f.hour, t.hour()) {
            t = t.date().at(t.hour(), 0, 0, 0).checked_add(1.hour()).ok()?;
        } else if !bit(f.minute, t.minute()) {
            t = t.checked_add(1.minute()).ok()?;
        } else {
            return Some(t);
        }
    }
}

fn bit(set: u64, value: i8) -> bool {
    u32::try_from(value).is_ok_and(|v| set & (1 << v) != 0)
}

fn first_of_next_month(date: Date) -> Option<DateTime> {
    Some(
        date.first_of_month()
            .checked_add(1.month())
            .ok()?
            .at(0, 0, 0, 0),
    )
}

/// robfig's rule: when either day field is a star, both must match; otherwise either.
fn day_matches(f: &Fields, date: Date) -> bool {
    let dom = bit(f.dom, date.day());
    let dow = bit(f.dow, date.weekday().to_sunday_zero_offset());
    if f.dom_star || f.dow_star {
        dom && dow
    } else {
        dom || dow
    }
}

fn descriptor_rule(spec: &str, descriptor: &str) -> Result<Rule, Error> {
    let fields = match descriptor {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        _ => {
            let Some(duration) = descriptor.strip_prefix("every ") else {
                return Err(Error::Syntax(format!("unrecognized descriptor: {spec}")));
            };
            let delay = parse_go_duration(duration.trim())
                .map_err(|e| Error::Syntax(format!("failed to parse duration {spec}: {e}")))?;
            // robfig: at least a second, truncated to whole seconds.
            let seconds = delay.as_secs().max(1);
            return Ok(Rule::Every(SignedDuration::from_secs(seconds)));
        }
    };
    parse_fields(fields).map(Rule::Fields)
}

fn parse_fields(spec: &str) -> Result<Fields, Error> {
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(Error::Syntax(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        )));
    }
    let (minute, _) = parse_field(fields[0], &MINUTES)?;
    let (hour, _) = parse_field(fields[1], &HOURS)?;
    let (dom, dom_star) = parse_field(fields[2], &DOM)?;
    let (month, _) = parse_field(fields[3], &MONTHS)?;
    let (dow, dow_star) = parse_field(fields[4], &DOW)?;
    Ok(Fields {
        minute,
        hour,
        dom,
        month,
        dow,
        dom_star,
        dow_star,
    })
}

/// A comma-separated field: its bits, and whether any part was a plain `*` or `?`.
fn parse_field(field: &str, bounds: &Bounds) -> Result<(u64, bool), Error> {
    let mut bits = 0;
    let mut star = false;
    for expr in field.split(',') {
        let (b, s) = parse_range(expr, bounds).map_err(Error::Syntax)?;
        bits |= b;
        star |= s;
    }
    Ok((bits, star))
}

fn parse_range(expr: &str, r: &Bounds) -> Result<(u64, bool), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let mut star = false;
    let (start, mut end) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        star = true;
        (r.min, r.max)
    } else {
        let start = parse_int_or_name(low_and_high[0], r)?;
        let end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], r)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_int(range_and_step[1])?;
            // "N/step" means "N-max/step".
            if single {
                end = r.max;
            }
            // robfig keeps the star bit for "*/1" only.
            if step > 1 {
                star = false;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < r.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            r.min
        ));
    }
    if end > r.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            r.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let bits = (start..=end)
        .step_by(usize::try_from(step).unwrap_or(usize::MAX))
        .fold(0u64, |bits, v| bits | (1 << v));
    Ok((bits, star))
}

fn parse_int_or_name(expr: &str, r: &Bounds) -> Result<u32, String> {
    let lower = expr.to_ascii_lowercase();
    if let Some((_, v)) = r.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    parse_int(expr)
}

fn parse_int(expr: &str) -> Result<u32, String> {
    let atoi = |why: &str| {
        format!("failed to parse int from {expr}: strconv.Atoi: parsing \"{expr}\": {why}")
    };
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(atoi("invalid syntax"));
    }
    let n: i64 = expr.parse().map_err(|_| atoi("value out of range"))?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    u32::try_from(n).map_err(|_| atoi("value out of range"))
}

/// A Go duration (`1h30m`, `90s`, `1.5h`): sequences of a decimal number and a unit.
fn parse_go_duration(d: &str) -> Result<SignedDuration, String> {
    let invalid = || format!("time: invalid duration \"{d}\"");
    let (negative, body) = match d.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, d.strip_prefix('+').unwrap_or(d)),
    };
    if body == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if body.is_empty() {
        return Err(invalid());
    }
    let mut total_nanos: f64 = 0.0;
    let mut rest = body;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = match &rest[..num_end] {
            "" | "." => return Err(invalid()),
            n => n.parse().map_err(|_| invalid())?,
        };
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration \"{d}\"")),
            other => {
                return Err(format!(
                    "time: unknown unit \"{other}\" in duration \"{d}\""
                ));
            }
        };
        total_nanos += number * nanos_per_unit;
        rest = &rest[unit_end..];
    }
    // Go's durations are int64 nanoseconds, about 292 years.
    if !total_nanos.is_finite() || total_nanos > 9.2e18 {
        return Err(invalid());
    }
    let seconds = SignedDuration::from_secs_f64(total_nanos / 1e9);
    Ok(if negative { -seconds } else { seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn utc(spec: &str) -> Schedule {
        Schedule::parse(spec, TimeZone::UTC).unwrap()
    }

    /// The next `n` runs after `from`, as RFC 3339 UTC strings.
    fn runs(schedule: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut t = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = schedule.next(t).unwrap();
            out.push(t.to_string());
        }
        out
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "* * * * *",
                "2026-01-01T00:00:30Z",
                &["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"],
            ),
            (
                "*/15 * * * *",
                "2026-01-01T00:00:00Z",
                &["2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z"],
            ),
            (
                "5/20 1-2 * * *",
                "2026-01-01T00:00:00Z",
                &[
                    "2026-01-01T01:05:00Z",
                    "2026-01-01T01:25:00Z",
                    "2026-01-01T01:45:00Z",
                    "2026-01-01T02:05:00Z",
                ],
            ),
            (
                "0 9 * JAN,mar MON-wed",
                "2026-01-01T00:00:00Z",
                // 2026-01-05 is a Monday.
                &["2026-01-05T09:00:00Z", "2026-01-06T09:00:00Z"],
            ),
            (
                "0 0 29 feb ?",
                "2026-01-01T00:00:00Z",
                &["2028-02-29T00:00:00Z"],
            ),
            (
                "@hourly",
                "2026-01-01T00:59:59Z",
                &["2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"],
            ),
            (
                "@weekly",
                "2026-01-01T00:00:00Z",
                &["2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"],
            ),
            ("@yearly", "2026-06-01T00:00:00Z", &["2027-01-01T00:00:00Z"]),
            (
                "@annually",
                "2026-06-01T00:00:00Z",
                &["2027-01-01T00:00:00Z"],
            ),
            (
                "@monthly",
                "2026-06-15T00:00:00Z",
                &["2026-07-01T00:00:00Z"],
            ),
            (
                "@midnight",
                "2026-06-15T10:00:00Z",
                &["2026-06-16T00:00:00Z"],
            ),
            ("@daily", "2026-06-15T00:00:00Z", &["2026-06-16T00:00:00Z"]),
        ];
        for (spec, from, want) in cases {
            assert_eq!(runs(&utc(spec), from, want.len()), *want, "{spec}");
        }
    }

    #[test]
    fn day_fields_combine_as_robfig_does() {
        // Neither is a star: either matches (the 13th, or any Friday).
        assert_eq!(
            runs(&utc("0 0 13 * 5"), "2026-02-01T00:00:00Z", 3),
            [
                "2026-02-06T00:00:00Z",
                "2026-02-13T00:00:00Z",
                "2026-02-20T00:00:00Z"
            ]
        );
        // A star in either: both must match (Fridays only).
        assert_eq!(
            runs(&utc("0 0 * * 5"), "2026-02-01T00:00:00Z", 1),
            ["2026-02-06T00:00:00Z"]
        );
        // "*/2" is no star (robfig drops the star bit for steps above one).
        assert_eq!(
            runs(&utc("0 0 */2 * 5"), "2026-02-01T00:00:00Z", 2),
            ["2026-02-03T00:00:00Z", "2026-02-05T00:00:00Z"]
        );
    }

    #[test]
    fn every_runs_a_constant_delay_after_the_whole_second() {
        let every = utc("@every 1h30m");
        assert_eq!(
            every.next(at("2026-01-01T00:00:00.700Z")),
            Some(at("2026-01-01T01:30:00Z"))
        );
        assert_eq!(
            utc("@every 100ms").next(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-01T00:00:01Z"))
        );
    }

    #[test]
    fn impossible_dates_never_fire() {
        assert_eq!(utc("0 0 30 2 *").next(at("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn errors_are_worded_as_robfig_words_them() {
        let err = |spec: &str| {
            Schedule::parse(spec, TimeZone::UTC)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err("* * *"), "expected exactly 5 fields, found 3: [* * *]");
        assert_eq!(
            err("60 * * * *"),
            "end of range (60) above maximum (59): 60"
        );
        assert_eq!(err("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(err("@often"), "unrecognized descriptor: @often");
        assert_eq!(err(""), "empty spec string");
        assert_eq!(
            err("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(
            err("x * * * *"),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert!(err("@every 5x").starts_with("failed to parse duration @every 5x"));
        assert_eq!(
            err("TZ=Mars/Olympus 0 * * * *"),
            "provided bad location Mars/Olympus: unknown time zone Mars/Olympus"
        );
        assert_eq!(
            zone("Nowhere/Special").unwrap_err(),
            Error::UnknownTimeZone("Nowhere/Special".to_owned())
        );
    }

    #[test]
    fn wall_times_follow_the_zone_across_daylight_saving() {
        let new_york = zone("America/New_York").unwrap();
        let nine = Schedule::parse("0 9 * * *", new_york.clone()).unwrap();
        // 2026-03-08: clocks go from 02:00 EST to 03:00 EDT.
        assert_eq!(
            runs(&nine, "2026-03-07T00:00:00Z", 2),
            ["2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z"]
        );
        // 02:30 does not exist on the 8th: that day is skipped, as robfig skips it.
        let half_two = Schedule::parse("30 2 * * *", new_york.clone()).unwrap();
        assert_eq!(
            runs(&half_two, "2026-03-07T08:00:00Z", 1),
            ["2026-03-09T06:30:00Z"]
        );
        // 2026-11-01: 01:30 happens twice (EDT, then EST); robfig, and so Kubernetes,
        // runs it both times.
        let half_one = Schedule::parse("30 1 * * *", new_york.clone()).unwrap();
        assert_eq!(
            runs(&half_one, "2026-11-01T00:00:00Z", 3),
            [
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-02T06:30:00Z"
            ]
        );
        // Every minute keeps going through the repeated hour, one real minute apart.
        let minutely = Schedule::parse("* * * * *", new_york.clone()).unwrap();
        assert_eq!(
            runs(&minutely, "2026-11-01T05:58:30Z", 3),
            [
                "2026-11-01T05:59:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:01:00Z"
            ]
        );
        // Spring forward: the minute after 01:59 EST is 03:00 EDT.
        assert_eq!(
            runs(&minutely, "2026-03-08T06:58:30Z", 2),
            ["2026-03-08T06:59:00Z", "2026-03-08T07:00:00Z"]
        );
        // A TZ= prefix overrides the zone given.
        let prefixed = Schedule::parse("CRON_TZ=Asia/Tokyo 0 9 * * *", TimeZone::UTC).unwrap();
        assert_eq!(
            runs(&prefixed, "2026-01-01T01:00:00Z", 1),
            ["2026-01-02T00:00:00Z"]
        );
    }

    #[test]
    fn most_recent_counts_missed_runs_and_finds_the_latest_past_a_limit() {
        let minutely = utc("* * * * *");
        assert_eq!(
            minutely.most_recent(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:00:59Z"), 100),
            None
        );
        assert_eq!(
            minutely.most_recent(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:03:10Z"), 100),
            Some((at("2026-01-01T00:03:00Z"), 3))
        );
        // Two days of minutes: more than the limit, and still the latest one.
        let (latest, count) = minutely
            .most_recent(at("2026-01-01T00:00:00Z"), at("2026-01-03T00:00:30Z"), 100)
            .unwrap();
        assert_eq!(latest, at("2026-01-03T00:00:00Z"));
        assert_eq!(count, 101);
        // A sparse schedule past the limit: the doubling window reaches far back.
        let firsts = utc("* * 1 * *");
        let (latest, _) = firsts
            .most_recent(at("2026-01-01T00:00:00Z"), at("2026-01-20T00:00:00Z"), 100)
            .unwrap();
        assert_eq!(latest, at("2026-01-01T23:59:00Z"));
    }
}
