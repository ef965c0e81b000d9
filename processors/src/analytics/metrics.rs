//! Per-flight analytics: CONTRACT.md §4 as a pure function of the flight's rows, computed with
//! polars.
//!
//! The analytics processor loads a closed flight's rows from `telemetry_raw` into [`FlightRows`],
//! calls [`compute`] (CPU work: from a blocking thread) and stores the returned [`Metrics`] as the
//! `computed_metrics` JSON document plus denormalised columns. Every metric is defined next to the
//! code that computes it, with its unit. Conventions used throughout:
//!
//! - **Rows** are the flight's packets ordered by ts (strictly increasing), all within
//!   `start_ts ..= end_ts`.
//! - **dt** of a row is the time to the next row, in seconds (`(ts[i+1] − ts[i]) / 1e6`); the
//!   last row has none.
//! - **Integrals** use the trapezoid rule `Σ ½·(a[i] + a[i+1])·dt[i]` over the consecutive row
//!   pairs in which the integrand is present in *both* rows; pairs with a missing side are
//!   skipped (not bridged). A **time-weighted mean** is that integral divided by the summed dt of
//!   the pairs it used. An integral with no usable pair is null.
//! - **"Consecutive rows that have X"** means consecutive in the subsequence of rows that have X
//!   (a row without X in between does not break the pair), for distances, yaw unwrapping and
//!   attitude rates. This differs from integrals on purpose: the contract words integrals as
//!   "pairs where the inputs are present in both rows".
//! - A composite input (position, gps, velocity, power) is present in a row when all its
//!   components are; attitude members (roll, pitch, yaw) are counted separately.
//! - **Percentiles and medians** interpolate linearly between order statistics
//!   (`QuantileMethod::Linear`, numpy's and pandas' default): the q-quantile of n sorted values is
//!   `v[⌊h⌋] + (h − ⌊h⌋)·(v[⌊h⌋+1] − v[⌊h⌋])` with `h = (n − 1)·q`.
//! - **Standard deviations** are sample ones (ddof = 1).
//! - **Rates** are `|Δvalue / dt|` between consecutive rows (of the subsequence that has the
//!   value).
//! - A metric whose inputs are absent is `None` (JSON `null`), never 0.

use std::f64::consts::PI;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

/// Bumped whenever the definition of any metric changes; stored with the metrics.
pub const ANALYTICS_VERSION: i32 = 1;

/// Mean Earth radius (IUGG) used by the haversine distance, in metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid flight rows: {0}")]
    InvalidRows(String),
    #[error("polars: {0}")]
    Polars(#[from] PolarsError),
    #[error("unexpected polars output: {0}")]
    UnexpectedOutput(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A flight's rows, column by column, ordered by ts. Every column has one entry per row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlightRows {
    pub ts_us: Vec<i64>,
    pub throttle: Vec<f64>,
    pub voltage: Vec<Option<f64>>,
    pub current: Vec<Option<f64>>,
    pub mah_drawn: Vec<Option<i64>>,
    pub x: Vec<Option<f64>>,
    pub y: Vec<Option<f64>>,
    pub z: Vec<Option<f64>>,
    pub lat: Vec<Option<f64>>,
    pub lon: Vec<Option<f64>>,
    pub alt_m: Vec<Option<f64>>,
    pub vx: Vec<Option<f64>>,
    pub vy: Vec<Option<f64>>,
    pub vz: Vec<Option<f64>>,
    pub roll: Vec<Option<f64>>,
    pub pitch: Vec<Option<f64>>,
    pub yaw: Vec<Option<f64>>,
}

/// One row, packet-shaped, for building [`FlightRows`] with [`FlightRows::push`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlightRow {
    pub ts_us: i64,
    pub throttle: f64,
    pub voltage: Option<f64>,
    pub current: Option<f64>,
    pub mah_drawn: Option<i64>,
    /// [x, y, z] metres, local ENU frame.
    pub position: Option<[f64; 3]>,
    /// [lat, lon, alt_m]: WGS-84 degrees, metres above MSL.
    pub gps: Option<[f64; 3]>,
    /// [vx, vy, vz] m/s.
    pub velocity: Option<[f64; 3]>,
    /// [roll, pitch, yaw] degrees.
    pub attitude: Option<[f64; 3]>,
}

impl FlightRows {
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            ts_us: Vec::with_capacity(rows),
            throttle: Vec::with_capacity(rows),
            voltage: Vec::with_capacity(rows),
            current: Vec::with_capacity(rows),
            mah_drawn: Vec::with_capacity(rows),
            x: Vec::with_capacity(rows),
            y: Vec::with_capacity(rows),
            z: Vec::with_capacity(rows),
            lat: Vec::with_capacity(rows),
            lon: Vec::with_capacity(rows),
            alt_m: Vec::with_capacity(rows),
            vx: Vec::with_capacity(rows),
            vy: Vec::with_capacity(rows),
            vz: Vec::with_capacity(rows),
            roll: Vec::with_capacity(rows),
            pitch: Vec::with_capacity(rows),
            yaw: Vec::with_capacity(rows),
        }
    }

    pub fn len(&self) -> usize {
        self.ts_us.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts_us.is_empty()
    }

    pub fn push(&mut self, row: FlightRow) {
        fn split(
            value: Option<[f64; 3]>,
            a: &mut Vec<Option<f64>>,
            b: &mut Vec<Option<f64>>,
            c: &mut Vec<Option<f64>>,
        ) {
            a.push(value.map(|v| v[0]));
            b.push(value.map(|v| v[1]));
            c.push(value.map(|v| v[2]));
        }
        self.ts_us.push(row.ts_us);
        self.throttle.push(row.throttle);
        self.voltage.push(row.voltage);
        self.current.push(row.current);
        self.mah_drawn.push(row.mah_drawn);
        split(row.position, &mut self.x, &mut self.y, &mut self.z);
        split(row.gps, &mut self.lat, &mut self.lon, &mut self.alt_m);
        split(row.velocity, &mut self.vx, &mut self.vy, &mut self.vz);
        split(row.attitude, &mut self.roll, &mut self.pitch, &mut self.yaw);
    }

    /// The rows must be non-empty, of equal column lengths, strictly increasing in ts and within
    /// the flight's bounds.
    fn check(&self, start_ts_us: i64, end_ts_us: i64) -> Result<()> {
        let n = self.ts_us.len();
        if n == 0 {
            return Err(Error::InvalidRows("a flight has at least one row".into()));
        }
        let lengths = [
            ("throttle", self.throttle.len()),
            ("voltage", self.voltage.len()),
            ("current", self.current.len()),
            ("mah_drawn", self.mah_drawn.len()),
            ("x", self.x.len()),
            ("y", self.y.len()),
            ("z", self.z.len()),
            ("lat", self.lat.len()),
            ("lon", self.lon.len()),
            ("alt_m", self.alt_m.len()),
            ("vx", self.vx.len()),
            ("vy", self.vy.len()),
            ("vz", self.vz.len()),
            ("roll", self.roll.len()),
            ("pitch", self.pitch.len()),
            ("yaw", self.yaw.len()),
        ];
        for (name, len) in lengths {
            if len != n {
                return Err(Error::InvalidRows(format!("column {name} has {len} rows, ts has {n}")));
            }
        }
        if self.ts_us.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(Error::InvalidRows("ts is not strictly increasing".into()));
        }
        if start_ts_us > end_ts_us || self.ts_us[0] < start_ts_us || self.ts_us[n - 1] > end_ts_us {
            return Err(Error::InvalidRows("rows outside the flight's bounds".into()));
        }
        Ok(())
    }
}

/// `computed_metrics` of one flight: the exact keys of CONTRACT.md §4; `None` serialises as
/// `null`.
/// Formulas are documented where each is computed (`scalar_exprs`, `yaw_frame`,
/// `power_curve_frame`, [`compute`]); units are in the field docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// s: end_ts − start_ts of the flight (not of its rows).
    pub duration_s: f64,
    /// Rows in the flight.
    pub packet_count: i64,
    /// mAh: ∫ current dt / 3.6.
    pub total_mah: Option<f64>,
    /// mAh: last − first reported mah_drawn.
    pub mah_drawn_delta: Option<i64>,
    /// Wh: ∫ voltage·current dt / 3600.
    pub energy_wh: Option<f64>,
    /// V.
    pub min_voltage: Option<f64>,
    /// V.
    pub max_voltage: Option<f64>,
    /// A.
    pub max_current: Option<f64>,
    /// A, time-weighted.
    pub avg_current: Option<f64>,
    /// m.
    pub distance_m: Option<f64>,
    /// Wh/km.
    pub wh_per_km: Option<f64>,
    /// m/s.
    pub max_speed_mps: Option<f64>,
    /// m.
    pub max_altitude_m: Option<f64>,
    /// °.
    pub attitude_std_deg: AttitudeStd,
    /// Throttle fraction 0–1, time-weighted.
    pub throttle_mean: Option<f64>,
    /// 1/s.
    pub throttle_smoothness: Option<f64>,
    /// Throttle fraction 0–1.
    pub hover_throttle: Option<f64>,
    /// V.
    pub voltage_sag_v: Option<f64>,
    /// mΩ.
    pub internal_resistance_mohm: Option<f64>,
    pub power_curve: Vec<PowerBin>,
    pub pilot_fingerprint: PilotFingerprint,
    pub gaps: Gaps,
    /// [`ANALYTICS_VERSION`] at computation time.
    pub analytics_version: i32,
}

/// Sample standard deviation (ddof = 1) of each attitude angle, degrees; null with fewer than 2
/// values. Yaw is unwrapped first (period 360°).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttitudeStd {
    pub roll: Option<f64>,
    pub pitch: Option<f64>,
    pub yaw: Option<f64>,
}

/// One non-empty throttle bin of the power curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerBin {
    /// k/10 for bin k (0.0, 0.1, … 0.9).
    pub bin_start: f64,
    /// W: plain mean of voltage·current over the bin's rows that have both; null if none.
    pub mean_power_w: Option<f64>,
    /// A: plain mean of current over the bin's rows that have it; null if none.
    pub mean_current_a: Option<f64>,
    /// s: Σ of the bin's rows' dt to the next row (the flight's last row contributes 0).
    pub seconds: f64,
}

/// Distribution features of how the drone was flown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PilotFingerprint {
    pub throttle_p10: Option<f64>,
    pub throttle_p50: Option<f64>,
    pub throttle_p90: Option<f64>,
    pub roll_rate_p95_dps: Option<f64>,
    pub pitch_rate_p95_dps: Option<f64>,
    pub yaw_rate_p95_dps: Option<f64>,
    pub throttle_reversals_per_min: Option<f64>,
}

/// Data completeness: consecutive-row gaps longer than 1 s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gaps {
    pub count: i64,
    /// Σ of the full lengths of those gaps, s.
    pub seconds: f64,
}

// Column names of the frame.
const TS: &str = "ts_us";
const THROTTLE: &str = "throttle";
const VOLTAGE: &str = "voltage";
const CURRENT: &str = "current";
const MAH: &str = "mah_drawn";
const X: &str = "x";
const Y: &str = "y";
const Z: &str = "z";
const LAT: &str = "lat";
const LON: &str = "lon";
const ALT: &str = "alt_m";
const VX: &str = "vx";
const VY: &str = "vy";
const VZ: &str = "vz";
const ROLL: &str = "roll";
const PITCH: &str = "pitch";
const YAW: &str = "yaw";
// Derived columns.
const DT_US: &str = "dt_us";
const DT: &str = "dt";
const POWER: &str = "power";
const SPEED: &str = "speed";
const HAS_POS: &str = "has_pos";
const HAS_GPS: &str = "has_gps";
const HAS_VI: &str = "has_vi";
const BIN: &str = "bin";

/// Computes the metrics of one flight from its rows (see the module doc for the conventions).
/// `throttle_threshold` is the flight rule's T (used by `hover_throttle`).
pub fn compute(rows: &FlightRows, start_ts_us: i64, end_ts_us: i64, throttle_threshold: f64) -> Result<Metrics> {
    rows.check(start_ts_us, end_ts_us)?;
    // The row-wise columns are computed once and shared by the three queries below.
    let base = with_derived_columns(to_frame(rows)?.lazy()).collect()?;
    // Which source distance_m and max_altitude_m use is decided here, so the query evaluates
    // only that one (polars evaluates every branch of a when/then).
    let has_position = base.column(HAS_POS)?.bool()?.any();
    let queries = vec![
        base.clone().lazy().select(scalar_exprs(throttle_threshold, has_position)),
        yaw_frame(base.clone().lazy()),
        power_curve_frame(base.lazy()),
    ];
    // Run side by side on polars' thread pool.
    let Ok::<[DataFrame; 3], _>([scalars, yaw, bins]) = collect_all(queries)?.try_into() else {
        return Err(Error::UnexpectedOutput("collect_all returned another number of frames"));
    };

    let duration_s = (end_ts_us - start_ts_us) as f64 / 1e6;
    let packet_count = rows.len() as i64;
    let f = |name: &str| scalar_f64(&scalars, name);

    // wh_per_km, Wh/km: energy_wh / (distance_m / 1000); null when either is null or the flight
    // covered less than 10 m (the ratio would be noise).
    let energy_wh = f("energy_wh")?;
    let distance_m = f("distance_m")?;
    let wh_per_km = match (energy_wh, distance_m) {
        (Some(energy), Some(distance)) if distance >= 10.0 => Some(energy / (distance / 1000.0)),
        _ => None,
    };

    // throttle_reversals_per_min, 1/min: the number of sign changes between consecutive non-zero
    // Δthrottle (Δ = throttle[i+1] − throttle[i], zeros dropped), per minute of duration_s;
    // null with fewer than 2 rows (no Δ at all) or a zero duration.
    let reversals = f("throttle_reversals")?;
    let throttle_reversals_per_min = match reversals {
        Some(count) if rows.len() >= 2 && duration_s > 0.0 => Some(count / (duration_s / 60.0)),
        _ => None,
    };

    Ok(Metrics {
        duration_s,
        packet_count,
        total_mah: f("total_mah")?,
        mah_drawn_delta: scalar_i64(&scalars, "mah_drawn_delta")?,
        energy_wh,
        min_voltage: f("min_voltage")?,
        max_voltage: f("max_voltage")?,
        max_current: f("max_current")?,
        avg_current: f("avg_current")?,
        distance_m,
        wh_per_km,
        max_speed_mps: f("max_speed_mps")?,
        max_altitude_m: f("max_altitude_m")?,
        attitude_std_deg: AttitudeStd {
            roll: f("roll_std")?,
            pitch: f("pitch_std")?,
            yaw: scalar_f64(&yaw, "yaw_std")?,
        },
        throttle_mean: f("throttle_mean")?,
        throttle_smoothness: f("throttle_smoothness")?,
        hover_throttle: f("hover_throttle")?,
        voltage_sag_v: f("voltage_sag_v")?,
        internal_resistance_mohm: f("internal_resistance_mohm")?,
        power_curve: power_bins(&bins)?,
        pilot_fingerprint: PilotFingerprint {
            throttle_p10: f("throttle_p10")?,
            throttle_p50: f("throttle_p50")?,
            throttle_p90: f("throttle_p90")?,
            roll_rate_p95_dps: f("roll_rate_p95")?,
            pitch_rate_p95_dps: f("pitch_rate_p95")?,
            yaw_rate_p95_dps: scalar_f64(&yaw, "yaw_rate_p95")?,
            throttle_reversals_per_min,
        },
        gaps: Gaps {
            count: scalar_i64(&scalars, "gap_count")?.unwrap_or(0),
            seconds: f("gap_seconds")?.unwrap_or(0.0),
        },
        analytics_version: ANALYTICS_VERSION,
    })
}

fn to_frame(rows: &FlightRows) -> Result<DataFrame> {
    let float = |name: &str, values: &[Option<f64>]| Column::new(name.into(), values);
    let frame = DataFrame::new(vec![
        Column::new(TS.into(), rows.ts_us.as_slice()),
        Column::new(THROTTLE.into(), rows.throttle.as_slice()),
        float(VOLTAGE, &rows.voltage),
        float(CURRENT, &rows.current),
        Column::new(MAH.into(), rows.mah_drawn.as_slice()),
        float(X, &rows.x),
        float(Y, &rows.y),
        float(Z, &rows.z),
        float(LAT, &rows.lat),
        float(LON, &rows.lon),
        float(ALT, &rows.alt_m),
        float(VX, &rows.vx),
        float(VY, &rows.vy),
        float(VZ, &rows.vz),
        float(ROLL, &rows.roll),
        float(PITCH, &rows.pitch),
        float(YAW, &rows.yaw),
    ])?;
    Ok(frame)
}

/// The value in the next row (null for the last row).
fn next(expr: Expr) -> Expr {
    expr.shift(lit(-1))
}

/// The value in the previous row (null for the first row).
fn prev(expr: Expr) -> Expr {
    expr.shift(lit(1))
}

fn null() -> Expr {
    lit(NULL).cast(DataType::Float64)
}

fn present(names: &[&str]) -> Expr {
    names.iter().map(|name| col(*name).is_not_null()).reduce(|all, one| all.and(one)).unwrap_or(lit(true))
}

fn square(expr: Expr) -> Expr {
    expr.clone() * expr
}

/// Row-wise columns every metric builds on.
fn with_derived_columns(frame: LazyFrame) -> LazyFrame {
    frame.with_columns([
        // µs to the next row (null on the last row), and the same in seconds.
        (next(col(TS)) - col(TS)).alias(DT_US),
        ((next(col(TS)) - col(TS)).cast(DataType::Float64) / lit(1e6)).alias(DT),
        // W; null unless the row has both voltage and current.
        (col(VOLTAGE) * col(CURRENT)).alias(POWER),
        // ‖velocity‖, m/s; null unless the row has all three components.
        (square(col(VX)) + square(col(VY)) + square(col(VZ))).sqrt().alias(SPEED),
        present(&[X, Y, Z]).alias(HAS_POS),
        present(&[LAT, LON, ALT]).alias(HAS_GPS),
        present(&[VOLTAGE, CURRENT]).alias(HAS_VI),
    ])
}

/// ∫ value dt in value·s by the trapezoid rule over the row pairs where the value is present in
/// both rows; null when there is no such pair.
fn trapezoid(value: &str) -> Expr {
    let area = (lit(0.5) * (col(value) + next(col(value))) * col(DT)).sum();
    when(pair_count(value).gt(lit(0))).then(area).otherwise(null())
}

/// Σ dt (s) of the row pairs used by [`trapezoid`].
fn pair_seconds(value: &str) -> Expr {
    col(DT).filter(col(value).is_not_null().and(next(col(value)).is_not_null())).sum()
}

fn pair_count(value: &str) -> Expr {
    (col(value) + next(col(value))).count()
}

/// Time-weighted mean: [`trapezoid`] divided by [`pair_seconds`]; null without a usable pair.
fn time_weighted_mean(value: &str) -> Expr {
    trapezoid(value) / pair_seconds(value)
}

fn quantile(expr: Expr, q: f64) -> Expr {
    expr.quantile(lit(q), QuantileMethod::Linear)
}

/// The values of `value` (and their ts) in the rows that have it, for rates and unwrapping.
fn subsequence(value: &str) -> (Expr, Expr) {
    let mask = col(value).is_not_null();
    (col(value).filter(mask.clone()), col(TS).filter(mask))
}

/// |Δvalue / dt| between consecutive entries of a subsequence; `ts` in µs. The first entry is
/// null.
fn rates(values: Expr, ts: Expr) -> Expr {
    let dt = (ts.clone() - prev(ts)).cast(DataType::Float64) / lit(1e6);
    ((values.clone() - prev(values)) / dt).abs()
}

/// attitude_std_deg.yaw (°) and pilot_fingerprint.yaw_rate_p95_dps (°/s) over the yaw of the
/// rows that have it, unwrapped the way numpy's `unwrap(p, period=360)` does: each step larger
/// than 180° in magnitude is replaced by the equivalent step in [−180, 180) (+180 for a positive
/// step of exactly 180 mod 360), and the corrections accumulate. Staged as columns so every
/// intermediate is computed once.
fn yaw_frame(frame: LazyFrame) -> LazyFrame {
    const STEP: &str = "yaw_step";
    const SHIFTED: &str = "yaw_step_plus_180";
    const EQUIVALENT: &str = "yaw_step_wrapped";
    const CORRECTION: &str = "yaw_correction";
    const UNWRAPPED: &str = "yaw_unwrapped";
    let step = || col(STEP);
    let shifted = || col(SHIFTED);
    // (step + 180) mod 360 the way numpy computes it (fmod, then + 360 if negative), so the
    // result is bit-identical to numpy for every step a yaw in [−180, 180) can make; polars'
    // floored `%` (within an ulp of it) only serves steps beyond ±540°.
    let wrapped = when(shifted().gt_eq(lit(0.0)).and(shifted().lt(lit(360.0))))
        .then(shifted())
        .when(shifted().gt_eq(lit(360.0)).and(shifted().lt(lit(720.0))))
        .then(shifted() - lit(360.0))
        .when(shifted().lt(lit(0.0)).and(shifted().gt_eq(lit(-360.0))))
        .then(shifted() + lit(360.0))
        .otherwise(shifted() % lit(360.0));
    let equivalent = || col(EQUIVALENT);
    let equivalent_step =
        when(equivalent().eq(lit(-180.0)).and(step().gt(lit(0.0)))).then(lit(180.0)).otherwise(equivalent());
    let correction =
        when(step().abs().lt(lit(180.0))).then(lit(0.0)).otherwise(equivalent_step - step()).fill_null(lit(0.0));
    frame
        .filter(col(YAW).is_not_null())
        .select([col(TS), col(YAW)])
        .with_column((col(YAW) - prev(col(YAW))).alias(STEP))
        .with_column((step() + lit(180.0)).alias(SHIFTED))
        .with_column((wrapped - lit(180.0)).alias(EQUIVALENT))
        .with_column(correction.alias(CORRECTION))
        .with_column((col(YAW) + col(CORRECTION).cum_sum(false)).alias(UNWRAPPED))
        .select([
            sample_std(col(UNWRAPPED)).alias("yaw_std"),
            quantile(rates(col(UNWRAPPED), col(TS)), 0.95).alias("yaw_rate_p95"),
        ])
}

/// Sample standard deviation (ddof = 1), null with fewer than 2 values.
fn sample_std(values: Expr) -> Expr {
    when(values.clone().count().gt_eq(lit(2))).then(values.std(1)).otherwise(null())
}

/// Every single-valued metric, as one row of named columns.
fn scalar_exprs(throttle_threshold: f64, has_position: bool) -> Vec<Expr> {
    let mut exprs = Vec::new();

    // total_mah, mAh: ∫ current dt (A·s) / 3.6.
    exprs.push((trapezoid(CURRENT) / lit(3.6)).alias("total_mah"));

    // mah_drawn_delta, mAh: last − first reported mah_drawn (rows that have it); null if none.
    let mah = col(MAH).drop_nulls();
    exprs.push((mah.clone().last() - mah.first()).alias("mah_drawn_delta"));

    // energy_wh, Wh: ∫ voltage·current dt (W·s) / 3600, over pairs with both in both rows.
    exprs.push((trapezoid(POWER) / lit(3600.0)).alias("energy_wh"));

    // min_voltage, max_voltage, max_current: V, V, A over the rows that have them.
    exprs.push(col(VOLTAGE).min().alias("min_voltage"));
    exprs.push(col(VOLTAGE).max().alias("max_voltage"));
    exprs.push(col(CURRENT).max().alias("max_current"));

    // avg_current, A: time-weighted mean of current.
    exprs.push(time_weighted_mean(CURRENT).alias("avg_current"));

    // distance_m, m: if any row has a position, Σ ‖Δ(x, y, z)‖ between consecutive rows that have
    // a position; otherwise Σ √(haversine² + Δalt_m²) between consecutive rows that have gps, with
    // haversine = 2R·asin(√(sin²(Δφ/2) + cos φ₁·cos φ₂·sin²(Δλ/2))), φ, λ in radians and
    // R = 6 371 008.8 m. Null with fewer than 2 points of the source used.
    let distance = if has_position {
        let step = |name: &str| {
            let values = col(name).filter(col(HAS_POS));
            values.clone() - prev(values)
        };
        let total = (square(step(X)) + square(step(Y)) + square(step(Z))).sqrt().sum();
        when(col(HAS_POS).sum().gt_eq(lit(2))).then(total).otherwise(null())
    } else {
        let values = |name: &str| col(name).filter(col(HAS_GPS));
        let radians = |name: &str| values(name) * lit(PI / 180.0);
        let (phi, lambda) = (radians(LAT), radians(LON));
        let half_dphi = (phi.clone() - prev(phi.clone())) / lit(2.0);
        let half_dlambda = (lambda.clone() - prev(lambda)) / lit(2.0);
        let haversine_term = square(half_dphi.sin()) + prev(phi.clone()).cos() * phi.cos() * square(half_dlambda.sin());
        let ground = lit(2.0 * EARTH_RADIUS_M) * haversine_term.sqrt().arcsin();
        let climb = values(ALT) - prev(values(ALT));
        let total = (square(ground) + square(climb)).sqrt().sum();
        when(col(HAS_GPS).sum().gt_eq(lit(2))).then(total).otherwise(null())
    };
    exprs.push(distance.alias("distance_m"));

    // max_speed_mps, m/s: max ‖(vx, vy, vz)‖ over the rows with velocity.
    exprs.push(col(SPEED).max().alias("max_speed_mps"));

    // max_altitude_m, m: if any row has a position, max z over those rows (height in the local
    // frame); otherwise max alt_m − the first alt_m over the rows with gps (height above the
    // flight's first fix). Null without either.
    let max_altitude = if has_position {
        col(Z).filter(col(HAS_POS)).max()
    } else {
        let gps_alt = col(ALT).filter(col(HAS_GPS));
        gps_alt.clone().max() - gps_alt.first()
    };
    exprs.push(max_altitude.alias("max_altitude_m"));

    // attitude_std_deg, °: sample std of roll and pitch over the rows that have each; null with
    // fewer than 2 values. (Yaw, unwrapped first: see yaw_frame.)
    let (roll, roll_ts) = subsequence(ROLL);
    let (pitch, pitch_ts) = subsequence(PITCH);
    exprs.push(sample_std(roll.clone()).alias("roll_std"));
    exprs.push(sample_std(pitch.clone()).alias("pitch_std"));

    // throttle_mean (fraction 0–1): time-weighted mean of throttle; null with one row.
    exprs.push(time_weighted_mean(THROTTLE).alias("throttle_mean"));

    // throttle_smoothness, 1/s: mean of |Δthrottle / dt| over consecutive rows (lower is
    // smoother); null with one row.
    exprs.push(((next(col(THROTTLE)) - col(THROTTLE)) / col(DT)).abs().mean().alias("throttle_smoothness"));

    // hover_throttle (fraction): median throttle over rows with ‖velocity‖ < 0.5 m/s and
    // throttle ≥ T; rows without velocity do not count. Null if none.
    let hovering = col(SPEED).lt(lit(0.5)).and(col(THROTTLE).gt_eq(lit(throttle_threshold)));
    exprs.push(quantile(col(THROTTLE).filter(hovering), 0.5).alias("hover_throttle"));

    // voltage_sag_v, V: over the rows with both voltage and current, median voltage of the rows
    // whose current ≤ the 10th percentile of current (resting) minus median voltage of the rows
    // whose current ≥ its 90th percentile (loaded). Null without such rows.
    let loaded_current = col(CURRENT).filter(col(HAS_VI));
    let loaded_voltage = col(VOLTAGE).filter(col(HAS_VI));
    let p10 = quantile(loaded_current.clone(), 0.1);
    let p90 = quantile(loaded_current.clone(), 0.9);
    let resting_v = quantile(loaded_voltage.clone().filter(loaded_current.clone().lt_eq(p10)), 0.5);
    let sagging_v = quantile(loaded_voltage.clone().filter(loaded_current.clone().gt_eq(p90)), 0.5);
    exprs.push((resting_v - sagging_v).alias("voltage_sag_v"));

    // internal_resistance_mohm, mΩ: −1000 × b of the least-squares line voltage = a + b·current
    // over the rows with both, b = Σ(I − Ī)(V − V̄) / Σ(I − Ī)². Null with fewer than 20 such
    // rows or a current range (max − min) under 1 A.
    let current_dev = loaded_current.clone() - loaded_current.clone().mean();
    let voltage_dev = loaded_voltage.clone() - loaded_voltage.mean();
    let slope = (current_dev.clone() * voltage_dev).sum() / square(current_dev).sum();
    let current_range = loaded_current.clone().max() - loaded_current.min();
    exprs.push(
        when(col(HAS_VI).sum().gt_eq(lit(20)).and(current_range.gt_eq(lit(1.0))))
            .then(lit(-1000.0) * slope)
            .otherwise(null())
            .alias("internal_resistance_mohm"),
    );

    // pilot_fingerprint.throttle_p10/p50/p90 (fraction): percentiles of throttle over all rows.
    exprs.push(quantile(col(THROTTLE), 0.1).alias("throttle_p10"));
    exprs.push(quantile(col(THROTTLE), 0.5).alias("throttle_p50"));
    exprs.push(quantile(col(THROTTLE), 0.9).alias("throttle_p90"));

    // pilot_fingerprint.{roll,pitch}_rate_p95_dps, °/s: 95th percentile of the rates
    // |Δangle / dt| between consecutive rows that have the angle; null with fewer than 2 such
    // rows. (Yaw, unwrapped: see yaw_frame.)
    exprs.push(quantile(rates(roll, roll_ts), 0.95).alias("roll_rate_p95"));
    exprs.push(quantile(rates(pitch, pitch_ts), 0.95).alias("pitch_rate_p95"));

    // Sign changes between consecutive non-zero Δthrottle (see throttle_reversals_per_min).
    let step = next(col(THROTTLE)) - col(THROTTLE);
    let rising = step.clone().filter(step.neq(lit(0.0))).gt(lit(0.0));
    exprs.push(rising.clone().neq(prev(rising)).sum().cast(DataType::Float64).alias("throttle_reversals"));

    // gaps.count and gaps.seconds (s): consecutive-row gaps longer than 1 s, and the sum of
    // their full lengths.
    let is_gap = col(DT_US).gt(lit(1_000_000i64));
    exprs.push(is_gap.clone().sum().alias("gap_count"));
    exprs.push(col(DT).filter(is_gap).sum().alias("gap_seconds"));

    exprs
}

/// power_curve: rows grouped into 10 throttle bins, bin k holding k/10 ≤ throttle < (k+1)/10
/// compared in double precision (so 0.3 is in bin 3), the last bin also holding 1.0. One entry
/// per non-empty bin, by bin: mean power (W) of the bin's rows with both voltage and current,
/// mean current (A) of its rows with current, and the seconds spent in it (each row counts its
/// dt to the next row; the last row of the flight counts 0).
fn power_curve_frame(frame: LazyFrame) -> LazyFrame {
    // bin = the number of edges 0.1 … 0.9 at or below the throttle; each edge is k / 10.0, the
    // double nearest to k/10, exactly as a literal 0.3 would be.
    let bin =
        (1..=9).fold(lit(0i32), |bin, k| bin + col(THROTTLE).gt_eq(lit(f64::from(k) / 10.0)).cast(DataType::Int32));
    frame
        .with_columns([bin.alias(BIN), col(DT).fill_null(lit(0.0))])
        .group_by([col(BIN)])
        .agg([
            col(POWER).mean().alias("mean_power_w"),
            col(CURRENT).mean().alias("mean_current_a"),
            col(DT).sum().alias("seconds"),
        ])
        .sort([BIN], SortMultipleOptions::default())
}

fn power_bins(bins: &DataFrame) -> Result<Vec<PowerBin>> {
    let bin = bins.column(BIN)?.cast(&DataType::Int32)?;
    let power = bins.column("mean_power_w")?.cast(&DataType::Float64)?;
    let current = bins.column("mean_current_a")?.cast(&DataType::Float64)?;
    let seconds = bins.column("seconds")?.cast(&DataType::Float64)?;
    let (bin, power, current, seconds) = (bin.i32()?, power.f64()?, current.f64()?, seconds.f64()?);
    let mut out = Vec::with_capacity(bins.height());
    for i in 0..bins.height() {
        let Some(k) = bin.get(i) else {
            return Err(Error::UnexpectedOutput("a throttle bin is null"));
        };
        out.push(PowerBin {
            bin_start: f64::from(k) / 10.0,
            mean_power_w: power.get(i),
            mean_current_a: current.get(i),
            seconds: seconds.get(i).unwrap_or(0.0),
        });
    }
    Ok(out)
}

fn scalar_f64(frame: &DataFrame, name: &str) -> Result<Option<f64>> {
    let column = frame.column(name)?.cast(&DataType::Float64)?;
    let value = column.f64()?.get(0);
    // NaN cannot arise from validated packets; map it to null rather than emit invalid JSON.
    Ok(value.filter(|v| v.is_finite()))
}

fn scalar_i64(frame: &DataFrame, name: &str) -> Result<Option<i64>> {
    let column = frame.column(name)?.cast(&DataType::Int64)?;
    Ok(column.i64()?.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const T0: i64 = 1_777_636_800 * S;

    fn row(t_s: f64, throttle: f64) -> FlightRow {
        FlightRow { ts_us: T0 + (t_s * 1e6).round() as i64, throttle, ..FlightRow::default() }
    }

    fn rows(list: &[FlightRow]) -> FlightRows {
        let mut rows = FlightRows::default();
        for r in list {
            rows.push(*r);
        }
        rows
    }

    fn metrics(list: &[FlightRow]) -> Metrics {
        let rows = rows(list);
        compute(&rows, rows.ts_us[0], rows.ts_us[rows.len() - 1], 0.05).unwrap()
    }

    fn close(actual: Option<f64>, expected: f64) {
        let actual = actual.expect("metric is null");
        assert!((actual - expected).abs() <= 1e-12 * expected.abs().max(1.0), "{actual} != {expected}");
    }

    #[test]
    fn electrical_metrics_by_hand() {
        // ts 0, 1, 2, 4 s; the last pair is a 2 s gap.
        let mut a = row(0.0, 0.2);
        a.voltage = Some(12.0);
        a.current = Some(10.0);
        a.mah_drawn = Some(100);
        let mut b = row(1.0, 0.4);
        b.voltage = Some(11.0);
        b.current = Some(20.0);
        let mut c = row(2.0, 0.4);
        c.current = Some(30.0); // no voltage: no power in pairs (b, c) and (c, d)
        c.mah_drawn = Some(110);
        let mut d = row(4.0, 0.1);
        d.voltage = Some(10.0);
        d.current = Some(10.0);
        d.mah_drawn = Some(125);
        let m = metrics(&[a, b, c, d]);

        assert_eq!(m.duration_s, 4.0);
        assert_eq!(m.packet_count, 4);
        // ∫I dt = 15·1 + 25·1 + 20·2 = 80 A·s → 80 / 3.6 mAh; avg = 80 / 4 s.
        close(m.total_mah, 80.0 / 3.6);
        close(m.avg_current, 20.0);
        assert_eq!(m.mah_drawn_delta, Some(25));
        // Power only in pair (a, b): ½(120 + 220)·1 = 170 W·s.
        close(m.energy_wh, 170.0 / 3600.0);
        assert_eq!((m.min_voltage, m.max_voltage), (Some(10.0), Some(12.0)));
        assert_eq!(m.max_current, Some(30.0));
        // Throttle: ∫ = 0.3 + 0.4 + 0.5 = 1.2 over 4 s.
        close(m.throttle_mean, 0.3);
        // |Δ/dt| = 0.2, 0, 0.15 → mean 0.35 / 3.
        close(m.throttle_smoothness, 0.35 / 3.0);
        // Δthrottle = +0.2, 0, −0.3: one sign change over 4 s = 1/15 min.
        close(m.pilot_fingerprint.throttle_reversals_per_min, 15.0);
        assert_eq!(m.gaps, Gaps { count: 1, seconds: 2.0 });
        // Voltage+current rows: a (10 A, 12 V), b (20 A, 11 V), d (10 A, 10 V).
        // Currents sorted 10, 10, 20: p10 = 10, p90 = 10 + 0.8·10 = 18.
        // Resting (I ≤ 10): a, d → median 11 V; loaded (I ≥ 18): b → 11 V. Sag 0.
        close(m.voltage_sag_v, 0.0);
        assert_eq!(m.internal_resistance_mohm, None); // 3 rows < 20
                                                      // Nothing positional or attitude-related is present.
        assert_eq!(m.distance_m, None);
        assert_eq!(m.wh_per_km, None);
        assert_eq!(m.max_speed_mps, None);
        assert_eq!(m.max_altitude_m, None);
        assert_eq!(m.hover_throttle, None);
        assert_eq!(m.attitude_std_deg, AttitudeStd { roll: None, pitch: None, yaw: None });
        assert_eq!(m.pilot_fingerprint.roll_rate_p95_dps, None);
        assert_eq!(m.pilot_fingerprint.yaw_rate_p95_dps, None);
        assert_eq!(m.analytics_version, ANALYTICS_VERSION);
    }

    #[test]
    fn absent_inputs_are_null_never_zero() {
        let m = metrics(&[row(0.0, 0.5), row(0.5, 0.5), row(1.0, 0.5)]);
        let json = serde_json::to_value(&m).unwrap();
        for key in [
            "total_mah",
            "mah_drawn_delta",
            "energy_wh",
            "min_voltage",
            "max_voltage",
            "max_current",
            "avg_current",
            "distance_m",
            "wh_per_km",
            "max_speed_mps",
            "max_altitude_m",
            "hover_throttle",
            "voltage_sag_v",
            "internal_resistance_mohm",
        ] {
            assert!(json[key].is_null(), "{key} = {}", json[key]);
        }
        assert!(json["attitude_std_deg"]["roll"].is_null());
        assert!(json["pilot_fingerprint"]["pitch_rate_p95_dps"].is_null());
        assert_eq!(json["throttle_mean"], 0.5);
        assert_eq!(json["throttle_smoothness"], 0.0);
        assert_eq!(json["pilot_fingerprint"]["throttle_reversals_per_min"], 0.0);
        assert_eq!(json["gaps"], serde_json::json!({"count": 0, "seconds": 0.0}));
        // The power curve has the bin but no electrical means.
        assert_eq!(
            json["power_curve"],
            serde_json::json!([{"bin_start": 0.5, "mean_power_w": null,
                                "mean_current_a": null, "seconds": 1.0}])
        );
        // Current alone: no power, no voltage metrics, but the current ones.
        let mut only_current = [row(0.0, 0.5), row(1.0, 0.5)];
        only_current[0].current = Some(2.0);
        only_current[1].current = Some(4.0);
        let m = metrics(&only_current);
        close(m.total_mah, 3.0 / 3.6);
        assert_eq!(m.energy_wh, None);
        assert_eq!(m.voltage_sag_v, None);
        // A single row: nothing to integrate or differentiate.
        let single = rows(&[row(0.0, 0.5)]);
        let m = compute(&single, single.ts_us[0], single.ts_us[0] + S, 0.05).unwrap();
        assert_eq!(m.throttle_mean, None);
        assert_eq!(m.throttle_smoothness, None);
        assert_eq!(m.pilot_fingerprint.throttle_reversals_per_min, None);
        assert_eq!(m.pilot_fingerprint.throttle_p50, Some(0.5));
        assert_eq!(m.duration_s, 1.0);
    }

    #[test]
    fn json_has_the_contract_keys() {
        let m = metrics(&[row(0.0, 0.5), row(1.0, 0.5)]);
        let json = serde_json::to_value(&m).unwrap();
        let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        let mut expected = vec![
            "duration_s",
            "packet_count",
            "total_mah",
            "mah_drawn_delta",
            "energy_wh",
            "min_voltage",
            "max_voltage",
            "max_current",
            "avg_current",
            "distance_m",
            "wh_per_km",
            "max_speed_mps",
            "max_altitude_m",
            "attitude_std_deg",
            "throttle_mean",
            "throttle_smoothness",
            "hover_throttle",
            "voltage_sag_v",
            "internal_resistance_mohm",
            "power_curve",
            "pilot_fingerprint",
            "gaps",
            "analytics_version",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        let fingerprint: Vec<&str> =
            json["pilot_fingerprint"].as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(fingerprint.len(), 7);
        for key in [
            "throttle_p10",
            "throttle_p50",
            "throttle_p90",
            "roll_rate_p95_dps",
            "pitch_rate_p95_dps",
            "yaw_rate_p95_dps",
            "throttle_reversals_per_min",
        ] {
            assert!(fingerprint.contains(&key), "{key}");
        }
    }

    #[test]
    fn percentiles_interpolate_linearly() {
        // Throttle 0.1, 0.2, 0.4, 0.8 (order shuffled): h = 3q.
        let m = metrics(&[row(0.0, 0.8), row(1.0, 0.1), row(2.0, 0.4), row(3.0, 0.2)]);
        let fp = &m.pilot_fingerprint;
        close(fp.throttle_p10, 0.1 + 0.3 * 0.1); // h = 0.3
        close(fp.throttle_p50, 0.2 + 0.5 * 0.2); // h = 1.5
        close(fp.throttle_p90, 0.4 + 0.7 * 0.4); // h = 2.7

        // Hover: rows with ‖v‖ < 0.5 and throttle ≥ 0.05 → 0.3, 0.5, 0.6, 0.9 (median 0.55);
        // excluded: a fast row, a row without velocity, a row under T.
        let still = Some([0.1, 0.2, 0.2]); // ‖v‖ = 0.3
        let mut list = vec![];
        for (i, t) in [0.3, 0.9, 0.6, 0.5].into_iter().enumerate() {
            let mut r = row(i as f64, t);
            r.velocity = still;
            list.push(r);
        }
        let mut fast = row(4.0, 0.7);
        fast.velocity = Some([0.0, 0.5, 0.0]); // exactly 0.5: not hovering
        let mut idle = row(5.0, 0.04);
        idle.velocity = still;
        list.extend([fast, idle, row(6.0, 0.2)]);
        let m = metrics(&list);
        close(m.hover_throttle, 0.55);
        close(m.max_speed_mps, 0.5);
    }

    #[test]
    fn voltage_sag_uses_interpolated_current_percentiles() {
        // Currents 0, 10, 20, 30, 40 A: p10 = 4 (h = 0.4), p90 = 36 (h = 3.6). Resting: the 0 A
        // row (V 12.6); loaded: the 40 A row (V 11.1). A row without voltage is ignored.
        let pairs = [(0.0, 12.6), (10.0, 12.3), (20.0, 12.0), (30.0, 11.6), (40.0, 11.1)];
        let mut list: Vec<FlightRow> = pairs
            .iter()
            .enumerate()
            .map(|(i, &(current, voltage))| {
                let mut r = row(i as f64, 0.5);
                r.current = Some(current);
                r.voltage = Some(voltage);
                r
            })
            .collect();
        let mut no_voltage = row(5.0, 0.5);
        no_voltage.current = Some(100.0);
        list.push(no_voltage);
        let m = metrics(&list);
        close(m.voltage_sag_v, 12.6 - 11.1);
        assert_eq!(m.max_current, Some(100.0));
    }

    #[test]
    fn internal_resistance_thresholds() {
        // V = 12 − 0.05·I exactly on a line: 50 mΩ.
        let build = |count: usize, current_span: f64| {
            let list: Vec<FlightRow> = (0..count)
                .map(|i| {
                    let current = current_span * i as f64 / (count - 1) as f64;
                    let mut r = row(i as f64 * 0.02, 0.5);
                    r.current = Some(current);
                    r.voltage = Some(12.0 - 0.05 * current);
                    r
                })
                .collect();
            metrics(&list)
        };
        close(build(20, 1.0).internal_resistance_mohm, 50.0);
        assert_eq!(build(19, 1.0).internal_resistance_mohm, None); // fewer than 20 rows
        assert_eq!(build(20, 0.999).internal_resistance_mohm, None); // range under 1 A
        close(build(200, 30.0).internal_resistance_mohm, 50.0);
    }

    #[test]
    fn yaw_is_unwrapped_across_180() {
        // 170 → −170 → −150 is a turn of +20° then +20°: unwrapped 170, 190, 210.
        // A row without attitude in between does not break the sequence.
        let yaws = [Some(170.0), None, Some(-170.0), Some(-150.0)];
        let list: Vec<FlightRow> = yaws
            .iter()
            .enumerate()
            .map(|(i, yaw)| {
                let mut r = row(i as f64, 0.5);
                r.attitude = yaw.map(|y| [0.0, i as f64, y]);
                r
            })
            .collect();
        let m = metrics(&list);
        close(m.attitude_std_deg.yaw, 20.0); // std of 170, 190, 210
        close(m.attitude_std_deg.roll, 0.0);
        close(m.attitude_std_deg.pitch, 1.5275252316519468); // std of 0, 2, 3
                                                             // Yaw rates: 20° over 2 s, 20° over 1 s → 10, 20; p95 = 10 + 0.95·10.
        close(m.pilot_fingerprint.yaw_rate_p95_dps, 19.5);
        // Pitch rates: 2/2 s, 1/1 s → 1, 1.
        close(m.pilot_fingerprint.pitch_rate_p95_dps, 1.0);

        // The other direction, and a full turn: −175 → 175 (−10°) → −175 (+10°) → 5 (+180°).
        let yaws = [-175.0, 175.0, -175.0, 5.0];
        let list: Vec<FlightRow> = yaws
            .iter()
            .enumerate()
            .map(|(i, &yaw)| {
                let mut r = row(i as f64, 0.5);
                r.attitude = Some([0.0, 0.0, yaw]);
                r
            })
            .collect();
        let m = metrics(&list);
        // Unwrapped −175, −185, −175, 5 (a step of exactly +180 stays +180).
        let values = [-175.0f64, -185.0, -175.0, 5.0];
        let mean = values.iter().sum::<f64>() / 4.0;
        let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0).sqrt();
        close(m.attitude_std_deg.yaw, std);
        // Rates 10, 10, 180: h = 1.9 → 10 + 0.9·170.
        close(m.pilot_fingerprint.yaw_rate_p95_dps, 10.0 + 0.9 * 170.0);
    }

    #[test]
    fn power_curve_bin_edges() {
        let mut list = Vec::new();
        for (i, throttle) in [0.3, 1.0, 0.29999999999999993, 0.95, 0.0].into_iter().enumerate() {
            let mut r = row(i as f64 * 2.0, throttle);
            r.voltage = Some(10.0);
            r.current = Some(i as f64 + 1.0);
            list.push(r);
        }
        list[3].voltage = None; // the 0.95 row has current but no power
        let m = metrics(&list);
        let bins: Vec<(f64, Option<f64>, Option<f64>, f64)> =
            m.power_curve.iter().map(|b| (b.bin_start, b.mean_power_w, b.mean_current_a, b.seconds)).collect();
        assert_eq!(
            bins,
            vec![
                (0.0, Some(50.0), Some(5.0), 0.0), // last row: 0 s
                (0.2, Some(30.0), Some(3.0), 2.0), // just under 0.3
                (0.3, Some(10.0), Some(1.0), 2.0), // 0.3 → bin 3
                // 1.0 and 0.95 → bin 9; power only from the 1.0 row.
                (0.9, Some(20.0), Some(3.0), 4.0),
            ]
        );
    }

    #[test]
    fn distance_prefers_positions_and_falls_back_to_gps() {
        // Positions (3-4-0 then 0-0-12 steps) with a position-less row in between.
        let mut list = vec![row(0.0, 0.5), row(1.0, 0.5), row(2.0, 0.5), row(3.0, 0.5)];
        list[0].position = Some([0.0, 0.0, 1.0]);
        list[1].position = Some([3.0, 4.0, 1.0]);
        list[3].position = Some([3.0, 4.0, 13.0]);
        list[0].gps = Some([47.0, 8.0, 400.0]); // ignored: positions exist
        list[2].gps = Some([47.1, 8.0, 900.0]);
        list[0].voltage = Some(10.0);
        list[0].current = Some(10.0);
        list[1].voltage = Some(10.0);
        list[1].current = Some(10.0);
        let m = metrics(&list);
        close(m.distance_m, 17.0);
        close(m.max_altitude_m, 13.0);
        // energy 100 W·1 s = 1/36 Wh over 17 m.
        close(m.wh_per_km, (100.0 / 3600.0) / 0.017);

        // GPS only: one degree of latitude along a meridian is R·π/180, climbing 30 m; the
        // second step is purely vertical.
        let mut list = vec![row(0.0, 0.5), row(1.0, 0.5), row(2.0, 0.5)];
        list[0].gps = Some([10.0, 20.0, 100.0]);
        list[1].gps = Some([11.0, 20.0, 130.0]);
        list[2].gps = Some([11.0, 20.0, 90.0]);
        let m = metrics(&list);
        let arc = EARTH_RADIUS_M * PI / 180.0;
        close(m.distance_m, (arc * arc + 900.0).sqrt() + 40.0);
        close(m.max_altitude_m, 30.0); // max 130 − first 100

        // Under 10 m: wh_per_km is null even with energy.
        let mut list = vec![row(0.0, 0.5), row(1.0, 0.5)];
        list[0].position = Some([0.0, 0.0, 0.0]);
        list[1].position = Some([9.0, 0.0, 0.0]);
        for r in &mut list {
            r.voltage = Some(10.0);
            r.current = Some(1.0);
        }
        let m = metrics(&list);
        close(m.distance_m, 9.0);
        assert_eq!(m.wh_per_km, None);

        // A single position: fewer than 2 points → null (not the gps fallback).
        let mut list = vec![row(0.0, 0.5), row(1.0, 0.5)];
        list[0].position = Some([0.0, 0.0, 5.0]);
        list[0].gps = Some([10.0, 20.0, 100.0]);
        list[1].gps = Some([11.0, 20.0, 130.0]);
        let m = metrics(&list);
        assert_eq!(m.distance_m, None);
        close(m.max_altitude_m, 5.0);
    }

    #[test]
    fn throttle_reversals_skip_flat_steps() {
        // Δ = +0.1, 0, +0.1, −0.2, 0, 0, +0.3 → signs + + − + : 2 reversals in 7 s.
        let throttles = [0.1, 0.2, 0.2, 0.3, 0.1, 0.1, 0.1, 0.4];
        let list: Vec<FlightRow> = throttles.iter().enumerate().map(|(i, &t)| row(i as f64, t)).collect();
        let m = metrics(&list);
        close(m.pilot_fingerprint.throttle_reversals_per_min, 2.0 / (7.0 / 60.0));
    }

    #[test]
    fn rows_are_checked() {
        let list = rows(&[row(0.0, 0.5), row(1.0, 0.5)]);
        assert!(compute(&list, T0 + 1, T0 + S, 0.05).is_err()); // first row before start
        assert!(compute(&list, T0, T0 + S - 1, 0.05).is_err()); // last row after end
        let unsorted = rows(&[row(1.0, 0.5), row(0.0, 0.5)]);
        assert!(compute(&unsorted, T0, T0 + S, 0.05).is_err());
        assert!(compute(&FlightRows::default(), T0, T0, 0.05).is_err());
        let mut ragged = rows(&[row(0.0, 0.5)]);
        ragged.yaw.push(None);
        assert!(compute(&ragged, T0, T0, 0.05).is_err());
    }
}
