//! Which system ids are vehicles, and their packets on a fixed time grid — a pure function of the
//! messages and their receive times, so a recorded log and a live link give the same packets.
//!
//! - A vehicle is a system id whose autopilot sent a `HEARTBEAT` (autopilot not
//!   `MAV_AUTOPILOT_INVALID`, type not `MAV_TYPE_GCS`); its telemetry starts with that heartbeat
//!   and is read from that component only (a gimbal or companion computer of the same system
//!   does not overwrite the vehicle's attitude).
//! - Grid ticks are the multiples of the period on the receive clock. The packet of tick `T`
//!   holds the latest value of each field received at or before `T`; it is sent only while the
//!   vehicle was heard within [`STALE_US`] (a vehicle that went silent yields no invented data)
//!   and once its throttle is known.
//! - `ts` is the vehicle's time: `T` plus the offset of the last `SYSTEM_TIME` whose
//!   `time_unix_usec` is set, else `T` itself (the receive time). A tick whose `ts` would not be
//!   after the vehicle's previous `ts` (its clock stepped back) is skipped.

use std::collections::{BTreeMap, BTreeSet};

use mavlink::dialects::common::{MavAutopilot, MavMessage, MavType};
use mavlink::MavHeader;

use super::mapping::{Packet, VehicleState};

/// A vehicle not heard for this long gets no more packets until it is heard again.
pub const STALE_US: i64 = 1_000_000;

/// Which vehicles are bridged.
#[derive(Debug, Clone)]
pub enum Selection {
    /// `--api-key`: the first vehicle heard; others are ignored.
    First,
    /// `--keys`: these system ids.
    Only(BTreeSet<u8>),
}

#[derive(Debug)]
struct Vehicle {
    component: u8,
    state: VehicleState,
    last_heard_us: i64,
    clock_offset_us: i64,
    last_ts_us: Option<i64>,
}

/// Something the operator should hear about once.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Vehicle { system_id: u8, component_id: u8 },
    Ignored { system_id: u8 },
}

pub struct Sampler {
    period_us: i64,
    selection: Selection,
    vehicles: BTreeMap<u8, Vehicle>,
    ignored: BTreeSet<u8>,
    /// The next tick not emitted yet.
    next_tick_us: Option<i64>,
    last_heard_us: Option<i64>,
    notices: Vec<Notice>,
}

impl Sampler {
    pub fn new(period_us: i64, selection: Selection) -> Self {
        assert!(period_us > 0);
        Self {
            period_us,
            selection,
            vehicles: BTreeMap::new(),
            ignored: BTreeSet::new(),
            next_tick_us: None,
            last_heard_us: None,
            notices: Vec::new(),
        }
    }

    /// One received message: first the packets of the ticks before `recv_us`, then the message
    /// is applied.
    pub fn on_message(&mut self, recv_us: i64, header: &MavHeader, message: &MavMessage) -> Vec<(u8, Packet)> {
        let packets = self.advance(recv_us);
        self.last_heard_us = Some(self.last_heard_us.map_or(recv_us, |last| last.max(recv_us)));
        if self.next_tick_us.is_none() {
            self.next_tick_us = Some(ceil_to(recv_us, self.period_us));
        }
        let system_id = header.system_id;
        if !self.vehicles.contains_key(&system_id) {
            let MavMessage::HEARTBEAT(heartbeat) = message else { return packets };
            if heartbeat.autopilot == MavAutopilot::MAV_AUTOPILOT_INVALID || heartbeat.mavtype == MavType::MAV_TYPE_GCS
            {
                return packets;
            }
            let wanted = match &self.selection {
                Selection::First => self.vehicles.is_empty(),
                Selection::Only(ids) => ids.contains(&system_id),
            };
            if !wanted {
                if self.ignored.insert(system_id) {
                    self.notices.push(Notice::Ignored { system_id });
                }
                return packets;
            }
            self.notices.push(Notice::Vehicle { system_id, component_id: header.component_id });
            self.vehicles.insert(
                system_id,
                Vehicle {
                    component: header.component_id,
                    state: VehicleState::default(),
                    last_heard_us: recv_us,
                    clock_offset_us: 0,
                    last_ts_us: None,
                },
            );
        }
        let Some(vehicle) = self.vehicles.get_mut(&system_id) else { return packets };
        if header.component_id != vehicle.component {
            return packets;
        }
        vehicle.last_heard_us = vehicle.last_heard_us.max(recv_us);
        if let MavMessage::SYSTEM_TIME(time) = message {
            if time.time_unix_usec != 0 {
                if let Ok(unix_us) = i64::try_from(time.time_unix_usec) {
                    vehicle.clock_offset_us = unix_us - recv_us;
                }
            }
        }
        vehicle.state.apply(message);
        packets
    }

    /// The packets of every tick before `now_us` not emitted yet. A live link is sampled like a
    /// recording, as its messages arrive: a tick is emitted once a later message shows what the
    /// vehicle reported by then (at most one message interval late), so a link that drops yields
    /// no packets it did not carry.
    pub fn advance(&mut self, now_us: i64) -> Vec<(u8, Packet)> {
        let mut packets = Vec::new();
        let Some(mut tick) = self.next_tick_us else { return packets };
        while tick < now_us {
            let fresh = self.vehicles.values().any(|v| tick - v.last_heard_us <= STALE_US);
            if !fresh {
                // Nothing changes before the next message: jump to the first tick at or after now.
                tick = tick.max(ceil_to(now_us, self.period_us));
                break;
            }
            for (&system_id, vehicle) in &mut self.vehicles {
                if tick - vehicle.last_heard_us > STALE_US {
                    continue;
                }
                let ts_us = tick + vehicle.clock_offset_us;
                if vehicle.last_ts_us.is_some_and(|last| ts_us <= last) {
                    continue;
                }
                if let Some(packet) = vehicle.state.packet(ts_us) {
                    vehicle.last_ts_us = Some(ts_us);
                    packets.push((system_id, packet));
                }
            }
            tick += self.period_us;
        }
        self.next_tick_us = Some(tick);
        packets
    }

    /// The end of a recording: the ticks up to and including the last message's time.
    pub fn finish(&mut self) -> Vec<(u8, Packet)> {
        match self.last_heard_us {
            Some(last) => self.advance(last + 1),
            None => Vec::new(),
        }
    }

    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }
}

fn ceil_to(value: i64, period: i64) -> i64 {
    value.div_euclid(period) * period + if value.rem_euclid(period) == 0 { 0 } else { period }
}

#[cfg(test)]
mod tests {
    use mavlink::dialects::common::*;

    use super::*;

    fn header(system_id: u8, component_id: u8) -> MavHeader {
        MavHeader { system_id, component_id, sequence: 0 }
    }

    fn heartbeat(armed: bool) -> MavMessage {
        let mut base_mode = MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED;
        if armed {
            base_mode |= MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED;
        }
        MavMessage::HEARTBEAT(HEARTBEAT_DATA {
            custom_mode: 5,
            mavtype: MavType::MAV_TYPE_QUADROTOR,
            autopilot: MavAutopilot::MAV_AUTOPILOT_ARDUPILOTMEGA,
            base_mode,
            system_status: MavState::MAV_STATE_ACTIVE,
            mavlink_version: 3,
        })
    }

    fn throttle(percent: u16) -> MavMessage {
        MavMessage::VFR_HUD(VFR_HUD_DATA { throttle: percent, ..VFR_HUD_DATA::DEFAULT })
    }

    #[test]
    fn packets_sit_on_the_grid_and_hold_what_was_received_by_their_tick() {
        let mut sampler = Sampler::new(20_000, Selection::First);
        assert!(sampler.on_message(1_005_000, &header(1, 1), &heartbeat(true)).is_empty());
        assert!(sampler.on_message(1_010_000, &header(1, 1), &throttle(30)).is_empty());
        // Ticks 1_020_000 and 1_040_000 come before this message, and 1_060_000 (== its time) not yet.
        let packets = sampler.on_message(1_060_000, &header(1, 1), &throttle(60));
        let summary: Vec<(i64, f64)> = packets.iter().map(|(_, p)| (p.ts_us, p.throttle)).collect();
        assert_eq!(summary, [(1_020_000, 0.3), (1_040_000, 0.3)]);
        let packets = sampler.finish();
        assert_eq!(packets.iter().map(|(_, p)| (p.ts_us, p.throttle)).collect::<Vec<_>>(), [(1_060_000, 0.6)]);
        let json = serde_json::to_value(packets[0].1.json()).unwrap();
        assert_eq!(json["extra"], serde_json::json!({"armed": true, "mode": "loiter"}));
    }

    #[test]
    fn only_autopilots_are_vehicles_and_the_first_one_wins_with_one_key() {
        let mut sampler = Sampler::new(20_000, Selection::First);
        let gcs = MavMessage::HEARTBEAT(HEARTBEAT_DATA {
            mavtype: MavType::MAV_TYPE_GCS,
            autopilot: MavAutopilot::MAV_AUTOPILOT_INVALID,
            ..HEARTBEAT_DATA::DEFAULT
        });
        sampler.on_message(0, &header(255, 190), &gcs);
        sampler.on_message(0, &header(255, 190), &throttle(50));
        sampler.on_message(0, &header(2, 1), &heartbeat(false));
        sampler.on_message(0, &header(2, 1), &throttle(10));
        sampler.on_message(0, &header(3, 1), &heartbeat(false));
        sampler.on_message(0, &header(3, 1), &throttle(90));
        // A gimbal of system 2 does not speak for the vehicle.
        sampler.on_message(0, &header(2, 154), &throttle(99));
        let packets = sampler.advance(30_000);
        assert_eq!(packets.iter().map(|(id, p)| (*id, p.throttle)).collect::<Vec<_>>(), [(2, 0.1), (2, 0.1)]);
        assert_eq!(
            sampler.take_notices(),
            [Notice::Vehicle { system_id: 2, component_id: 1 }, Notice::Ignored { system_id: 3 }]
        );
    }

    #[test]
    fn vehicle_time_comes_from_system_time_and_a_silent_vehicle_gets_no_packets() {
        let mut sampler = Sampler::new(100_000, Selection::Only([7].into()));
        sampler.on_message(0, &header(7, 1), &heartbeat(false));
        sampler.on_message(0, &header(7, 1), &throttle(0));
        let time = MavMessage::SYSTEM_TIME(SYSTEM_TIME_DATA { time_unix_usec: 1_700_000_000_000_000, time_boot_ms: 0 });
        let mut packets = sampler.on_message(50_000, &header(7, 1), &time);
        packets.extend(sampler.advance(10_000_000));
        // Ticks 0 (receive time) and 100 ms … 1 s (vehicle time), none once silent for over 1 s.
        assert_eq!(packets.len(), 11);
        assert_eq!(packets[0].1.ts_us, 0);
        assert_eq!(packets[1].1.ts_us, 1_700_000_000_000_000 + 100_000 - 50_000);
        assert!(packets.windows(2).all(|w| w[0].1.ts_us < w[1].1.ts_us));
        // Heard again: packets resume on the grid.
        let packets = sampler.on_message(12_000_000, &header(7, 1), &throttle(5));
        assert!(packets.is_empty());
        assert_eq!(sampler.advance(12_150_000).len(), 2);
    }
}
