//! MAVLink messages → the fields of a telemetry packet (CONTRACT.md §1), as pure functions.
//!
//! A [`VehicleState`] holds the latest known value of every field; each message updates the
//! fields it carries. A MAVLink "unknown" sentinel (`UINT16_MAX` mV, `-1` cA, …) carries no
//! value, so it leaves the field as it was: another message may know it, and a field no message
//! knows stays absent — never 0. Values outside the contract's ranges are absent too (the API
//! would refuse the whole batch for one of them).

use std::collections::BTreeMap;

use mavlink::dialects::common::{MavAutopilot, MavMessage, MavModeFlag, MavType};
use schemas::values::{Attitude, ExtraValue, Gps, Vec3};
use schemas::view::{ExtraJson, PacketJson};

/// The latest value of each packet field, as the vehicle last reported it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VehicleState {
    pub throttle: Option<f64>,
    pub voltage: Option<f64>,
    pub current: Option<f64>,
    pub mah_drawn: Option<i64>,
    /// `RADIO_STATUS.rssi` (the telemetry radio), preferred over `RC_CHANNELS.rssi`.
    pub rssi_radio: Option<i32>,
    pub rssi_rc: Option<i32>,
    pub position: Option<Vec3>,
    pub velocity: Option<Vec3>,
    pub gps: Option<Gps>,
    pub attitude: Option<Attitude>,
    pub mode: Option<String>,
    pub armed: Option<bool>,
    pub sats: Option<i64>,
}

/// One packet of CONTRACT.md §1: the vehicle's state at a tick.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub ts_us: i64,
    pub throttle: f64,
    state: VehicleState,
    extra: BTreeMap<String, ExtraValue>,
}

impl Packet {
    /// The packet as the API takes it (the one JSON shape of a packet, `schemas::view`).
    pub fn json(&self) -> PacketJson<'_> {
        let state = &self.state;
        PacketJson {
            attitude: state.attitude,
            current: state.current,
            drone_id: None,
            extra: (!self.extra.is_empty()).then_some(ExtraJson::Values(&self.extra)),
            gps: state.gps,
            mah_drawn: state.mah_drawn,
            position: state.position,
            received_at_us: None,
            rssi: state.rssi_radio.or(state.rssi_rc),
            throttle: self.throttle,
            ts_us: self.ts_us,
            velocity: state.velocity,
            voltage: state.voltage,
        }
    }
}

const U16_UNKNOWN: u16 = u16::MAX;
const U8_UNKNOWN: u8 = u8::MAX;

impl VehicleState {
    /// Applies one message from the vehicle's autopilot component.
    pub fn apply(&mut self, message: &MavMessage) {
        match message {
            MavMessage::VFR_HUD(hud) => {
                // uint16 %; a value above 100 (never sent by ArduPilot or PX4) is full throttle.
                self.throttle = Some((f64::from(hud.throttle) / 100.0).min(1.0));
            }
            MavMessage::SYS_STATUS(status) => {
                if status.voltage_battery != U16_UNKNOWN {
                    self.voltage = volts(f64::from(status.voltage_battery) / 1000.0).or(self.voltage);
                }
                if status.current_battery != -1 {
                    self.current = amperes(f64::from(status.current_battery) / 100.0).or(self.current);
                }
            }
            MavMessage::BATTERY_STATUS(battery) if battery.id == 0 => {
                // The pack is the sum of the cells given (UINT16_MAX: no such cell); a pack over
                // 65.5 V is sent as 65534 in cell 0 and the rest in cell 1, which sums the same.
                let cells: Vec<u16> = battery.voltages.iter().copied().filter(|&mv| mv != U16_UNKNOWN).collect();
                if !cells.is_empty() {
                    let millivolts: f64 = cells.iter().map(|&mv| f64::from(mv)).sum();
                    self.voltage = volts(millivolts / 1000.0).or(self.voltage);
                }
                if battery.current_battery != -1 {
                    self.current = amperes(f64::from(battery.current_battery) / 100.0).or(self.current);
                }
                if battery.current_consumed >= 0 {
                    self.mah_drawn = Some(i64::from(battery.current_consumed));
                }
            }
            MavMessage::ATTITUDE(attitude) => {
                let [roll, pitch, yaw] =
                    [attitude.roll, attitude.pitch, attitude.yaw].map(|rad| f64::from(rad).to_degrees());
                if [roll, pitch, yaw].iter().all(|d| d.is_finite()) {
                    self.attitude = Some(Attitude { roll, pitch, yaw });
                }
            }
            // Autopilots send 0, 0 before the first fix: not a position at Null Island.
            MavMessage::GLOBAL_POSITION_INT(position) if position.lat != 0 || position.lon != 0 => {
                let lat = f64::from(position.lat) / 1e7;
                let lon = f64::from(position.lon) / 1e7;
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) {
                    self.gps = Some(Gps { lat, lon, alt_m: f64::from(position.alt) / 1000.0 });
                }
            }
            MavMessage::LOCAL_POSITION_NED(local) => {
                // NED → ENU: east = y, north = x, up = -down.
                let position = Vec3 { x: f64::from(local.y), y: f64::from(local.x), z: -f64::from(local.z) };
                let velocity = Vec3 { x: f64::from(local.vy), y: f64::from(local.vx), z: -f64::from(local.vz) };
                if [position.x, position.y, position.z, velocity.x, velocity.y, velocity.z]
                    .iter()
                    .all(|v| v.is_finite())
                {
                    self.position = Some(position);
                    self.velocity = Some(velocity);
                }
            }
            MavMessage::RADIO_STATUS(radio) if radio.rssi != U8_UNKNOWN => {
                self.rssi_radio = Some(i32::from(radio.rssi));
            }
            MavMessage::RC_CHANNELS(rc) if rc.rssi != U8_UNKNOWN => {
                self.rssi_rc = Some(i32::from(rc.rssi));
            }
            MavMessage::GPS_RAW_INT(gps) if gps.satellites_visible != U8_UNKNOWN => {
                self.sats = Some(i64::from(gps.satellites_visible));
            }
            MavMessage::HEARTBEAT(heartbeat) => {
                self.armed = Some(heartbeat.base_mode.contains(MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED));
                self.mode =
                    Some(mode_name(heartbeat.autopilot, heartbeat.mavtype, heartbeat.base_mode, heartbeat.custom_mode));
            }
            _ => {}
        }
    }

    /// The packet stamped `ts_us`, or `None` while the throttle (required) is unknown.
    pub fn packet(&self, ts_us: i64) -> Option<Packet> {
        let throttle = self.throttle?;
        let mut extra = BTreeMap::new();
        if let Some(mode) = &self.mode {
            extra.insert("mode".to_owned(), ExtraValue::String(mode.clone()));
        }
        if let Some(armed) = self.armed {
            extra.insert("armed".to_owned(), ExtraValue::Bool(armed));
        }
        if let Some(sats) = self.sats {
            extra.insert("sats".to_owned(), ExtraValue::Int(sats));
        }
        Some(Packet { ts_us, throttle, state: self.clone(), extra })
    }
}

fn volts(value: f64) -> Option<f64> {
    (0.0..=100.0).contains(&value).then_some(value)
}

fn amperes(value: f64) -> Option<f64> {
    (-50.0..=1000.0).contains(&value).then_some(value)
}

/// The flight mode as ground stations name it (pymavlink's `mode_string_v10`, lowercased):
/// PX4's main/sub mode, ArduPilot's per-vehicle-type custom modes, else `mode(N)`.
pub fn mode_name(autopilot: MavAutopilot, mavtype: MavType, base_mode: MavModeFlag, custom_mode: u32) -> String {
    if autopilot == MavAutopilot::MAV_AUTOPILOT_PX4 {
        return px4_mode(custom_mode).to_owned();
    }
    if !base_mode.contains(MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED) {
        return format!("mode(0x{:08x})", base_mode.bits());
    }
    let table: &[(u32, &str)] = match mavtype as u32 {
        2 | 3 | 4 | 13 | 14 | 15 | 29 | 35 => COPTER,
        1 | 19 | 20 | 21 => PLANE,
        10 | 11 => ROVER,
        5 => TRACKER,
        12 => SUB,
        7 => BLIMP,
        _ => &[],
    };
    match table.iter().find(|(number, _)| *number == custom_mode) {
        Some((_, name)) => name.to_ascii_lowercase(),
        None => format!("mode({custom_mode})"),
    }
}

fn px4_mode(custom_mode: u32) -> &'static str {
    let main = (custom_mode >> 16) & 0xff;
    let sub = (custom_mode >> 24) & 0xff;
    match (main, sub) {
        (1, _) => "manual",
        (2, _) => "altctl",
        (3, _) => "posctl",
        (4, 2) => "takeoff",
        (4, 3) => "loiter",
        (4, 4) => "mission",
        (4, 5) => "rtl",
        (4, 6) => "land",
        (4, 7) => "rtgs",
        (4, 8) => "followme",
        (5, _) => "acro",
        (6, _) => "offboard",
        (7, _) => "stabilized",
        (8, _) => "rattitude",
        _ => "unknown",
    }
}

const COPTER: &[(u32, &str)] = &[
    (0, "STABILIZE"),
    (1, "ACRO"),
    (2, "ALT_HOLD"),
    (3, "AUTO"),
    (4, "GUIDED"),
    (5, "LOITER"),
    (6, "RTL"),
    (7, "CIRCLE"),
    (8, "POSITION"),
    (9, "LAND"),
    (10, "OF_LOITER"),
    (11, "DRIFT"),
    (13, "SPORT"),
    (14, "FLIP"),
    (15, "AUTOTUNE"),
    (16, "POSHOLD"),
    (17, "BRAKE"),
    (18, "THROW"),
    (19, "AVOID_ADSB"),
    (20, "GUIDED_NOGPS"),
    (21, "SMART_RTL"),
    (22, "FLOWHOLD"),
    (23, "FOLLOW"),
    (24, "ZIGZAG"),
    (25, "SYSTEMID"),
    (26, "AUTOROTATE"),
    (27, "AUTO_RTL"),
    (28, "TURTLE"),
    (29, "RATE_ACRO"),
];

const PLANE: &[(u32, &str)] = &[
    (0, "MANUAL"),
    (1, "CIRCLE"),
    (2, "STABILIZE"),
    (3, "TRAINING"),
    (4, "ACRO"),
    (5, "FBWA"),
    (6, "FBWB"),
    (7, "CRUISE"),
    (8, "AUTOTUNE"),
    (10, "AUTO"),
    (11, "RTL"),
    (12, "LOITER"),
    (13, "TAKEOFF"),
    (14, "AVOID_ADSB"),
    (15, "GUIDED"),
    (16, "INITIALISING"),
    (17, "QSTABILIZE"),
    (18, "QHOVER"),
    (19, "QLOITER"),
    (20, "QLAND"),
    (21, "QRTL"),
    (22, "QAUTOTUNE"),
    (23, "QACRO"),
    (24, "THERMAL"),
    (25, "LOITERALTQLAND"),
    (26, "AUTOLAND"),
];

const ROVER: &[(u32, &str)] = &[
    (0, "MANUAL"),
    (1, "ACRO"),
    (2, "LEARNING"),
    (3, "STEERING"),
    (4, "HOLD"),
    (5, "LOITER"),
    (6, "FOLLOW"),
    (7, "SIMPLE"),
    (8, "DOCK"),
    (9, "CIRCLE"),
    (10, "AUTO"),
    (11, "RTL"),
    (12, "SMART_RTL"),
    (15, "GUIDED"),
    (16, "INITIALISING"),
];

const TRACKER: &[(u32, &str)] =
    &[(0, "MANUAL"), (1, "STOP"), (2, "SCAN"), (4, "GUIDED"), (10, "AUTO"), (16, "INITIALISING")];

const SUB: &[(u32, &str)] = &[
    (0, "STABILIZE"),
    (1, "ACRO"),
    (2, "ALT_HOLD"),
    (3, "AUTO"),
    (4, "GUIDED"),
    (7, "CIRCLE"),
    (9, "SURFACE"),
    (16, "POSHOLD"),
    (19, "MANUAL"),
];

const BLIMP: &[(u32, &str)] =
    &[(0, "LAND"), (1, "MANUAL"), (2, "VELOCITY"), (3, "LOITER"), (4, "RTL"), (5, "AUTO"), (6, "HOLD")];

#[cfg(test)]
mod tests {
    use mavlink::dialects::common::*;

    use super::*;

    #[test]
    fn unknown_sentinels_leave_fields_absent_never_zero() {
        let mut state = VehicleState::default();
        state.apply(&MavMessage::SYS_STATUS(SYS_STATUS_DATA {
            voltage_battery: u16::MAX,
            current_battery: -1,
            ..SYS_STATUS_DATA::DEFAULT
        }));
        state.apply(&MavMessage::BATTERY_STATUS(BATTERY_STATUS_DATA {
            voltages: [u16::MAX; 10],
            current_battery: -1,
            current_consumed: -1,
            ..BATTERY_STATUS_DATA::DEFAULT
        }));
        state.apply(&MavMessage::VFR_HUD(VFR_HUD_DATA { throttle: 42, ..VFR_HUD_DATA::DEFAULT }));
        let packet = state.packet(1_000_000).unwrap();
        let json = serde_json::to_value(packet.json()).unwrap();
        assert_eq!(json, serde_json::json!({"ts": "1970-01-01T00:00:01.000000Z", "throttle": 0.42}));
    }

    #[test]
    fn units_and_frames_are_converted() {
        let mut state = VehicleState::default();
        state.apply(&MavMessage::VFR_HUD(VFR_HUD_DATA { throttle: 100, ..VFR_HUD_DATA::DEFAULT }));
        state.apply(&MavMessage::BATTERY_STATUS(BATTERY_STATUS_DATA {
            voltages: [4200, 4100, 4000, u16::MAX, u16::MAX, u16::MAX, u16::MAX, u16::MAX, u16::MAX, u16::MAX],
            current_battery: 3150,
            current_consumed: 812,
            ..BATTERY_STATUS_DATA::DEFAULT
        }));
        state.apply(&MavMessage::LOCAL_POSITION_NED(LOCAL_POSITION_NED_DATA {
            x: 1.0,
            y: 2.0,
            z: -3.0,
            vx: 0.5,
            vy: -0.5,
            vz: 0.25,
            ..LOCAL_POSITION_NED_DATA::DEFAULT
        }));
        state.apply(&MavMessage::GLOBAL_POSITION_INT(GLOBAL_POSITION_INT_DATA {
            lat: 473_977_420,
            lon: 85_455_940,
            alt: 488_100,
            ..GLOBAL_POSITION_INT_DATA::DEFAULT
        }));
        state.apply(&MavMessage::ATTITUDE(ATTITUDE_DATA {
            roll: std::f32::consts::FRAC_PI_2,
            ..ATTITUDE_DATA::DEFAULT
        }));
        let packet = state.packet(0).unwrap();
        let json = serde_json::to_value(packet.json()).unwrap();
        assert_eq!(json["throttle"], 1.0);
        assert_eq!(json["voltage"], 12.3);
        assert_eq!(json["current"], 31.5);
        assert_eq!(json["mah_drawn"], 812);
        assert_eq!(json["position"], serde_json::json!([2.0, 1.0, 3.0]));
        assert_eq!(json["velocity"], serde_json::json!([-0.5, 0.5, -0.25]));
        assert_eq!(json["gps"], serde_json::json!({"lat": 47.397742, "lon": 8.545594, "alt_m": 488.1}));
        assert!((json["attitude"][0].as_f64().unwrap() - 90.0).abs() < 1e-5);
    }

    #[test]
    fn no_fix_is_no_gps_and_the_radio_rssi_wins() {
        let mut state = VehicleState::default();
        state.apply(&MavMessage::GLOBAL_POSITION_INT(GLOBAL_POSITION_INT_DATA::DEFAULT));
        state.apply(&MavMessage::RC_CHANNELS(RC_CHANNELS_DATA { rssi: 90, ..RC_CHANNELS_DATA::DEFAULT }));
        assert_eq!(state.gps, None);
        state.throttle = Some(0.0);
        assert_eq!(state.packet(0).unwrap().json().rssi, Some(90));
        state.apply(&MavMessage::RADIO_STATUS(RADIO_STATUS_DATA { rssi: 200, ..RADIO_STATUS_DATA::DEFAULT }));
        state.apply(&MavMessage::RC_CHANNELS(RC_CHANNELS_DATA { rssi: 80, ..RC_CHANNELS_DATA::DEFAULT }));
        assert_eq!(state.packet(0).unwrap().json().rssi, Some(200));
    }

    #[test]
    fn modes_are_named_like_ground_stations_do() {
        let custom = MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED;
        let ardupilot = MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA;
        assert_eq!(mode_name(ardupilot, MavType::MAV_TYPE_QUADROTOR, custom, 5), "loiter");
        assert_eq!(mode_name(ardupilot, MavType::MAV_TYPE_SUBMARINE, custom, 19), "manual");
        assert_eq!(mode_name(ardupilot, MavType::MAV_TYPE_FIXED_WING, custom, 9), "mode(9)");
        assert_eq!(mode_name(ardupilot, MavType::MAV_TYPE_QUADROTOR, MavModeFlag::empty(), 5), "mode(0x00000000)");
        assert_eq!(
            mode_name(MavAutopilot::MAV_AUTOPILOT_PX4, MavType::MAV_TYPE_QUADROTOR, custom, 4 << 16 | 4 << 24),
            "mission"
        );
    }
}
