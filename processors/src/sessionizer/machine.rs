//! The sessionizer's state machine: CONTRACT.md §3 as a pure function over packets.
//!
//! The Kafka shell feeds every `telemetry.v1` record to [`Sessionizer::on_packet`] in partition
//! order and publishes each returned [`ClosedFlight`] to `flights.v1`. Everything here runs on
//! event time (`ts`) only, so a replay over the same records yields the same flights with the same
//! ids. The one wall-clock rule (a silent drone) is [`Sessionizer::close_silent`], which takes its
//! clock as an argument so it stays deterministic too.
//!
//! The whole [`Sessionizer`] is serde-serialisable: the shell snapshots it together with the
//! consumed offsets and restores it after a restart, so no flight is lost, split or duplicated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The configurable thresholds of the flight rule (CONTRACT.md §3), as the wire contract defines
/// them. Changing them and replaying recomputes flights.
pub use schemas::FlightRule;

/// A rule in the shape of CONTRACT.md §2 (`FlightSummary.rule`, the `flights.rule` column):
/// `{"throttle_threshold", "idle_s", "gap_s", "min_s"}`, durations in seconds.
pub fn rule_to_json(rule: &FlightRule) -> serde_json::Value {
    serde_json::json!({
        "throttle_threshold": rule.throttle_threshold,
        "idle_s": rule.idle_window_us as f64 / 1e6,
        "gap_s": rule.gap_us as f64 / 1e6,
        "min_s": rule.min_duration_us as f64 / 1e6,
    })
}

/// The rule of [`rule_to_json`]'s shape; `None` when a member is missing or not a number.
pub fn rule_from_json(value: &serde_json::Value) -> Option<FlightRule> {
    let seconds = |key: &str| value.get(key)?.as_f64().map(|s| (s * 1e6).round() as i64);
    Some(FlightRule {
        throttle_threshold: value.get("throttle_threshold")?.as_f64()?,
        idle_window_us: seconds("idle_s")?,
        gap_us: seconds("gap_s")?,
        min_duration_us: seconds("min_s")?,
    })
}

/// A flight that the rule has closed and kept: what the shell publishes as `FlightClosed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedFlight {
    /// UUIDv5 of `<drone_id>/<start_ts>`, see [`flight_id`].
    pub flight_id: Uuid,
    pub drone_id: Uuid,
    pub start_ts_us: i64,
    pub end_ts_us: i64,
    /// Packets with `start_ts <= ts <= end_ts` that the machine accepted.
    pub packet_count: u64,
    /// Kafka partition of the flight's last packet.
    pub partition: i32,
    /// Kafka offset of the flight's last packet: analytics waits until the store watermark of
    /// `partition` has passed it, so the flight's rows are all persisted.
    pub last_offset: i64,
}

/// A flight that has opened and not closed yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenFlight {
    pub start_ts_us: i64,
    /// Packets accepted into the flight so far, the opening one included.
    pub packet_count: u64,
    /// ts of the first packet of the current idle run (`throttle < T`), if one is running.
    pub idle_run_start_us: Option<i64>,
    /// Partition of the flight's latest packet (a drone's key keeps it on one partition unless
    /// the topic is repartitioned).
    pub partition: i32,
    /// Offset of the opening packet: where a consumer without this state must resume to
    /// rebuild the flight.
    pub first_offset: i64,
    /// Offset of the flight's latest packet.
    pub last_offset: i64,
}

/// Everything the machine remembers about one drone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DroneState {
    /// ts of the newest accepted packet. Packets at or before it are ignored.
    pub last_ts_us: Option<i64>,
    pub open: Option<OpenFlight>,
}

impl DroneState {
    /// Feeds one packet of this drone through the flight rule; returns the flight it closed,
    /// if any (at most one: a gap closes the old flight before this packet is considered, and the
    /// packet that opens a flight has `throttle >= T`, so it cannot also close it).
    ///
    /// A packet whose `ts` is not after the newest accepted packet's ts is **ignored** and
    /// changes nothing: Kafka redelivers after a crash or rebalance, and ingest guarantees
    /// strictly increasing ts per drone, so such a packet is a duplicate (or, for a replay that
    /// starts before a restored snapshot, already counted).
    pub fn on_packet(
        &mut self,
        rule: &FlightRule,
        drone_id: Uuid,
        ts_us: i64,
        throttle: f64,
        partition: i32,
        offset: i64,
    ) -> Option<ClosedFlight> {
        if self.last_ts_us.is_some_and(|last| ts_us <= last) {
            return None;
        }
        let mut closed = None;
        if let Some(last) = self.last_ts_us {
            // Strictly more than G: packets exactly G apart stay in one flight.
            if self.open.is_some() && ts_us.saturating_sub(last) > rule.gap_us {
                closed = self.close_at_last_packet(rule, drone_id);
            }
        }
        self.last_ts_us = Some(ts_us);

        let Some(open) = self.open.as_mut() else {
            if throttle >= rule.throttle_threshold {
                self.open = Some(OpenFlight {
                    start_ts_us: ts_us,
                    packet_count: 1,
                    idle_run_start_us: None,
                    partition,
                    first_offset: offset,
                    last_offset: offset,
                });
            }
            return closed;
        };

        open.packet_count += 1;
        open.partition = partition;
        open.last_offset = offset;
        if throttle >= rule.throttle_threshold {
            open.idle_run_start_us = None;
            return closed;
        }
        let run_start = *open.idle_run_start_us.get_or_insert(ts_us);
        if ts_us.saturating_sub(run_start) < rule.idle_window_us {
            return closed;
        }
        // The idle run has lasted W: this packet is the flight's last. `closed` is None here:
        // a gap close leaves no open flight, and a freshly opened flight returned above.
        let flight = self.open.take()?;
        finish(rule, drone_id, flight, ts_us)
    }

    /// Closes the open flight (if any) at the drone's newest accepted packet.
    fn close_at_last_packet(&mut self, rule: &FlightRule, drone_id: Uuid) -> Option<ClosedFlight> {
        let flight = self.open.take()?;
        // A flight is open only after its first packet was accepted, so last_ts is set.
        let end_ts_us = self.last_ts_us.unwrap_or(flight.start_ts_us);
        finish(rule, drone_id, flight, end_ts_us)
    }
}

/// Turns an open flight into a closed one, or discards it when shorter than the minimum.
fn finish(rule: &FlightRule, drone_id: Uuid, flight: OpenFlight, end_ts_us: i64) -> Option<ClosedFlight> {
    if end_ts_us.saturating_sub(flight.start_ts_us) < rule.min_duration_us {
        return None;
    }
    Some(ClosedFlight {
        flight_id: flight_id(drone_id, flight.start_ts_us),
        drone_id,
        start_ts_us: flight.start_ts_us,
        end_ts_us,
        packet_count: flight.packet_count,
        partition: flight.partition,
        last_offset: flight.last_offset,
    })
}

/// The flight rule over every drone of the partitions this consumer owns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sessionizer {
    rule: FlightRule,
    /// Keyed by drone id; ordered, so [`Sessionizer::close_silent`] is deterministic.
    drones: BTreeMap<Uuid, DroneState>,
}

impl Sessionizer {
    pub fn new(rule: FlightRule) -> Self {
        Self { rule, drones: BTreeMap::new() }
    }

    pub fn rule(&self) -> &FlightRule {
        &self.rule
    }

    /// The state of one drone, if it has sent anything.
    pub fn drone(&self, drone_id: &Uuid) -> Option<&DroneState> {
        self.drones.get(drone_id)
    }

    /// Every drone with an open flight.
    pub fn open_flights(&self) -> impl Iterator<Item = (&Uuid, &OpenFlight)> {
        self.drones.iter().filter_map(|(id, state)| state.open.as_ref().map(|open| (id, open)))
    }

    /// Feeds one packet; see [`DroneState::on_packet`]. Packets with a ts at or before the
    /// drone's newest accepted ts (redelivery, duplicates) are ignored.
    pub fn on_packet(
        &mut self,
        drone_id: Uuid,
        ts_us: i64,
        throttle: f64,
        partition: i32,
        offset: i64,
    ) -> Option<ClosedFlight> {
        let state = self.drones.entry(drone_id).or_default();
        state.on_packet(&self.rule, drone_id, ts_us, throttle, partition, offset)
    }

    /// Closes, at their last packet's ts, the open flights of drones that have been silent for
    /// more than G of wall-clock time: `now_wall_us - last_seen_wall_us(drone) > G` (strictly,
    /// like the event-time gap rule). Drones for which `last_seen_wall_us` returns `None` are
    /// left open. Returns the kept flights in drone-id order (short ones are discarded).
    ///
    /// What the shell must supply, so that a lagging consumer does not close flights that are
    /// still going on (their next packets are merely unread):
    /// - `last_seen_wall_us(drone)`: the `received_at` (ingest wall clock, µs) of the drone's
    ///   newest record the shell has fed to [`Sessionizer::on_packet`]. It is part of the
    ///   record, so it replays identically; the shell keeps it next to this state (snapshot).
    /// - `now_wall_us`: a clock that does not run ahead of the log. Either the newest
    ///   `received_at` seen on the partition (advances only as records are read, so lag never
    ///   closes anything), or the local clock **only while the partition is caught up** (no
    ///   records between the consumer position and the high watermark). Passing the local
    ///   clock while lagging would close flights early and split them.
    pub fn close_silent(
        &mut self,
        now_wall_us: i64,
        last_seen_wall_us: impl Fn(&Uuid) -> Option<i64>,
    ) -> Vec<ClosedFlight> {
        let gap_us = self.rule.gap_us;
        let mut closed = Vec::new();
        for (drone_id, state) in self.drones.iter_mut() {
            if state.open.is_none() {
                continue;
            }
            let Some(seen) = last_seen_wall_us(drone_id) else {
                continue;
            };
            if now_wall_us.saturating_sub(seen) > gap_us {
                closed.extend(state.close_at_last_packet(&self.rule, *drone_id));
            }
        }
        closed
    }

    /// Closes one drone's open flight (if any) at its last packet, as the silent-drone rule does;
    /// `None` when nothing was open or the flight was shorter than the minimum.
    pub fn close_drone(&mut self, drone_id: &Uuid) -> Option<ClosedFlight> {
        let state = self.drones.get_mut(drone_id)?;
        state.close_at_last_packet(&self.rule, *drone_id)
    }

    /// Closes every open flight at its last packet, as if every drone had gone silent: the end
    /// of a replayed range, or the end of a recorded stream in tests.
    pub fn close_all(&mut self) -> Vec<ClosedFlight> {
        let mut closed = Vec::new();
        for (drone_id, state) in self.drones.iter_mut() {
            closed.extend(state.close_at_last_packet(&self.rule, *drone_id));
        }
        closed
    }
}

/// The deterministic flight id of CONTRACT.md §3 (defined with the wire contract).
pub use schemas::flight_id;

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const MS: i64 = 1_000;
    /// 2026-05-01T12:00:00Z in µs.
    const T0: i64 = 1_777_636_800 * S;

    fn drone(n: u128) -> Uuid {
        Uuid::from_u128(0x1b4e28ba_2fa1_11d2_883f_0016d3cca400 + n)
    }

    /// Feeds `(ts_us, throttle)` packets of one drone (offsets 0, 1, …) and closes what is left
    /// open at the end, like a silent drone.
    fn run(packets: &[(i64, f64)]) -> Vec<ClosedFlight> {
        let mut machine = Sessionizer::new(FlightRule::default());
        let mut flights = Vec::new();
        for (offset, &(ts, throttle)) in packets.iter().enumerate() {
            flights.extend(machine.on_packet(drone(1), ts, throttle, 0, offset as i64));
        }
        flights.extend(machine.close_all());
        flights
    }

    /// Packets every `step_us` from `from_us` (inclusive) to `to_us` (exclusive).
    fn stream(from_us: i64, to_us: i64, step_us: i64, throttle: f64) -> Vec<(i64, f64)> {
        (0..).map(|i| from_us + i * step_us).take_while(|ts| *ts < to_us).map(|ts| (ts, throttle)).collect()
    }

    fn bounds(flights: &[ClosedFlight]) -> Vec<(i64, i64, u64)> {
        flights.iter().map(|f| (f.start_ts_us - T0, f.end_ts_us - T0, f.packet_count)).collect()
    }

    #[test]
    fn clean_flight() {
        // 2 s on the ground, 30 s flying, then 15 s idle at 50 Hz.
        let mut packets = stream(T0, T0 + 2 * S, 20 * MS, 0.0);
        packets.extend(stream(T0 + 2 * S, T0 + 32 * S, 20 * MS, 0.5));
        packets.extend(stream(T0 + 32 * S, T0 + 47 * S, 20 * MS, 0.01));
        let flights = run(&packets);
        // The idle run starts at 32 s and reaches 10 s at 42 s: that packet is the last.
        assert_eq!(bounds(&flights), vec![(2 * S, 42 * S, 2001)]);
        assert_eq!(flights[0].last_offset, 100 + 2000);
        assert_eq!(flights[0].partition, 0);
        assert_eq!(flights[0].flight_id, flight_id(drone(1), T0 + 2 * S));
    }

    #[test]
    fn brief_dip_under_threshold_does_not_split() {
        let mut packets = stream(T0, T0 + 20 * S, 20 * MS, 0.4);
        packets.extend(stream(T0 + 20 * S, T0 + 29 * S + 980 * MS, 20 * MS, 0.049));
        packets.extend(stream(T0 + 29 * S + 980 * MS, T0 + 50 * S, 20 * MS, 0.4));
        let flights = run(&packets);
        assert_eq!(bounds(&flights), vec![(0, 50 * S - 20 * MS, 2500)]);
    }

    #[test]
    fn idle_run_of_exactly_the_window_closes_at_that_packet() {
        let packets = vec![(T0, 0.5), (T0 + 5 * S, 0.0), (T0 + 10 * S, 0.0), (T0 + 15 * S, 0.0), (T0 + 16 * S, 0.5)];
        let flights = run(&packets);
        // Run starts at 5 s; the packet at 15 s is exactly W later and ends the flight. The
        // packet at 16 s opens a new flight that close_all discards (one packet, 0 s).
        assert_eq!(bounds(&flights), vec![(0, 15 * S, 4)]);
        assert_eq!(flights[0].last_offset, 3);
    }

    #[test]
    fn idle_run_just_under_the_window_continues() {
        let packets =
            vec![(T0, 0.5), (T0 + 5 * S, 0.0), (T0 + 14 * S + 980 * MS, 0.0), (T0 + 15 * S, 0.6), (T0 + 20 * S, 0.6)];
        assert_eq!(bounds(&run(&packets)), vec![(0, 20 * S, 5)]);
    }

    #[test]
    fn data_gap_over_g_closes_at_the_earlier_packet() {
        let packets = vec![
            (T0, 0.5),
            (T0 + 3 * S, 0.5),
            (T0 + 13 * S + 1, 0.5), // 10 s + 1 µs after the previous packet
            (T0 + 15 * S, 0.5),
        ];
        let flights = run(&packets);
        assert_eq!(bounds(&flights), vec![(0, 3 * S, 2), (13 * S + 1, 15 * S, 2)]);
        assert_eq!(flights[0].last_offset, 1);
        assert_eq!(flights[1].last_offset, 3);
    }

    #[test]
    fn data_gap_of_exactly_g_does_not_close() {
        let packets = vec![(T0, 0.5), (T0 + 3 * S, 0.5), (T0 + 13 * S, 0.5)];
        assert_eq!(bounds(&run(&packets)), vec![(0, 13 * S, 3)]);
    }

    #[test]
    fn gap_closes_before_the_later_packet_is_considered() {
        // The gap packet is idle: the old flight closes at 3 s and nothing new opens.
        let packets = vec![(T0, 0.5), (T0 + 3 * S, 0.5), (T0 + 20 * S, 0.0)];
        assert_eq!(bounds(&run(&packets)), vec![(0, 3 * S, 2)]);
    }

    #[test]
    fn flight_shorter_than_one_second_is_discarded() {
        let packets = vec![
            (T0, 0.5),
            (T0 + 999_999, 0.5),
            (T0 + 20 * S, 0.0), // gap: closes at 0.999999 s
        ];
        assert_eq!(run(&packets), vec![]);
    }

    #[test]
    fn flight_of_exactly_one_second_is_kept() {
        let packets = vec![(T0, 0.5), (T0 + S, 0.5), (T0 + 20 * S, 0.0)];
        assert_eq!(bounds(&run(&packets)), vec![(0, S, 2)]);
    }

    #[test]
    fn two_flights_in_one_stream() {
        let mut packets = stream(T0, T0 + 10 * S, 100 * MS, 0.5);
        packets.extend(stream(T0 + 10 * S, T0 + 25 * S, 100 * MS, 0.0));
        packets.extend(stream(T0 + 25 * S, T0 + 40 * S, 100 * MS, 0.5));
        packets.extend(stream(T0 + 40 * S, T0 + 60 * S, 100 * MS, 0.0));
        let flights = run(&packets);
        assert_eq!(bounds(&flights), vec![(0, 20 * S, 201), (25 * S, 50 * S, 251)]);
        assert_ne!(flights[0].flight_id, flights[1].flight_id);
    }

    /// A deterministic pseudo-random stream with flights, dips, idle runs and gaps.
    fn wild_stream(seed: u64, count: usize) -> Vec<(i64, f64)> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        let mut ts = T0;
        let mut throttle = 0.0;
        let mut packets = Vec::with_capacity(count);
        for _ in 0..count {
            ts += match next() % 100 {
                0 => 5 * S + (next() % (10 * S as u64)) as i64, // 5–15 s: some gaps exceed G
                _ => 100 * MS + (next() % 500) as i64,
            };
            if next() % 40 == 0 {
                throttle = if throttle >= 0.05 { 0.01 } else { 0.6 };
            }
            packets.push((ts, throttle));
        }
        packets
    }

    #[test]
    fn many_drones_interleaved_give_the_same_flights_as_each_alone() {
        let streams: Vec<Vec<(i64, f64)>> = (0..5).map(|i| wild_stream(i + 1, 3000)).collect();
        let mut alone = Vec::new();
        for (i, packets) in streams.iter().enumerate() {
            let mut machine = Sessionizer::default();
            for (offset, &(ts, throttle)) in packets.iter().enumerate() {
                alone.extend(machine.on_packet(drone(i as u128), ts, throttle, 0, offset as i64));
            }
            alone.extend(machine.close_all());
        }
        assert!(alone.len() > 20, "the stream should produce many flights");

        // Interleave by ts (ties by drone), offsets kept per drone.
        let mut merged: Vec<(i64, usize, usize)> = Vec::new();
        for (i, packets) in streams.iter().enumerate() {
            merged.extend(packets.iter().enumerate().map(|(k, p)| (p.0, i, k)));
        }
        merged.sort();
        let mut machine = Sessionizer::default();
        let mut together = Vec::new();
        for (ts, i, k) in merged {
            let throttle = streams[i][k].1;
            together.extend(machine.on_packet(drone(i as u128), ts, throttle, 0, k as i64));
        }
        together.extend(machine.close_all());
        let key = |f: &ClosedFlight| (f.drone_id, f.start_ts_us);
        alone.sort_by_key(key);
        together.sort_by_key(key);
        assert_eq!(alone, together);
    }

    #[test]
    fn duplicate_and_old_packets_are_ignored() {
        let clean = vec![(T0, 0.5), (T0 + S, 0.5), (T0 + 2 * S, 0.0), (T0 + 12 * S, 0.0)];
        let expected = run(&clean);
        assert_eq!(bounds(&expected), vec![(0, 12 * S, 4)]);

        let mut machine = Sessionizer::default();
        let mut flights = Vec::new();
        let noisy = [
            (T0, 0.5, 0),
            (T0, 0.5, 0), // redelivered
            (T0 + S, 0.5, 1),
            (T0 + 500 * MS, 0.0, 7), // old
            (T0 + 2 * S, 0.0, 2),
            (T0 + S, 0.9, 1), // redelivered after an idle packet: must not end the run
            (T0 + 12 * S, 0.0, 3),
            (T0 + 12 * S, 0.7, 3), // duplicate of the closing packet: must not reopen
        ];
        for (ts, throttle, offset) in noisy {
            flights.extend(machine.on_packet(drone(1), ts, throttle, 0, offset));
        }
        flights.extend(machine.close_all());
        assert_eq!(flights, expected);
    }

    #[test]
    fn flight_id_of_a_known_input() {
        // Expected value computed independently in Python:
        // uuid.uuid5(uuid.UUID("6f1c5a52-7a1e-4c63-9d7c-2b0e5d1f8a90"),
        //            "1b4e28ba-2fa1-11d2-883f-0016d3cca427/2026-05-01T12:00:00.020000Z")
        let expected = "61a4522a-6a15-522a-a473-5023081c8a41";
        // Parsed from upper case: the id text must still use the lowercase form.
        let drone_id = Uuid::parse_str("1B4E28BA-2FA1-11D2-883F-0016D3CCA427").unwrap();
        assert_eq!(flight_id(drone_id, T0 + 20 * MS).to_string(), expected);

        // And through the machine.
        let mut machine = Sessionizer::default();
        assert_eq!(machine.on_packet(drone_id, T0 + 20 * MS, 0.5, 3, 10), None);
        assert_eq!(machine.on_packet(drone_id, T0 + 2 * S, 0.5, 3, 11), None);
        let closed = machine.close_all();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].flight_id.to_string(), expected);
        assert_eq!((closed[0].partition, closed[0].last_offset), (3, 11));
    }

    #[test]
    fn silent_drone_closes_at_its_last_packet_only_after_more_than_g() {
        let mut machine = Sessionizer::default();
        let (a, b) = (drone(1), drone(2));
        for k in 0..100 {
            machine.on_packet(a, T0 + k * 100 * MS, 0.5, 0, k);
            machine.on_packet(b, T0 + k * 100 * MS, 0.5, 1, k);
        }
        // a was last received at wall 1000 s, b at 1005 s.
        let seen = |id: &Uuid| match id {
            id if *id == a => Some(1_000 * S),
            id if *id == b => Some(1_005 * S),
            _ => None,
        };
        assert!(machine.close_silent(1_010 * S, seen).is_empty()); // exactly G: not yet
        let closed = machine.close_silent(1_010 * S + 1, seen);
        assert_eq!(bounds(&closed), vec![(0, 9_900 * MS, 100)]);
        assert_eq!(closed[0].drone_id, a);
        assert_eq!(closed[0].last_offset, 99);
        assert!(machine.close_silent(1_010 * S + 2, seen).is_empty()); // already closed
        let closed = machine.close_silent(1_016 * S, seen);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].drone_id, closed[0].partition), (b, 1));
        // After closing, the drone's history still rejects old packets.
        assert_eq!(machine.drone(&a).unwrap().last_ts_us, Some(T0 + 9_900 * MS));
        assert!(machine.on_packet(a, T0, 0.5, 0, 0).is_none());
        assert!(machine.open_flights().next().is_none());
    }

    #[test]
    fn state_round_trip_mid_stream_gives_the_same_flights() {
        let packets = wild_stream(42, 4000);
        let drones = [drone(7), drone(8)];
        let mut uninterrupted = Sessionizer::default();
        let mut expected = Vec::new();
        for (offset, &(ts, throttle)) in packets.iter().enumerate() {
            let id = drones[offset % 2];
            expected.extend(uninterrupted.on_packet(id, ts, throttle, 0, offset as i64));
        }
        expected.extend(uninterrupted.close_all());
        assert!(expected.len() > 10);

        for cut in [1, 17, 500, 1234, 2999, 3999] {
            let mut machine = Sessionizer::default();
            let mut flights = Vec::new();
            for (offset, &(ts, throttle)) in packets.iter().enumerate() {
                if offset == cut {
                    let snapshot = serde_json::to_string(&machine).unwrap();
                    machine = serde_json::from_str(&snapshot).unwrap();
                    // A restart also redelivers some records before the snapshot point.
                    for back in cut.saturating_sub(5)..cut {
                        let (ts, throttle) = packets[back];
                        let id = drones[back % 2];
                        assert!(machine.on_packet(id, ts, throttle, 0, back as i64).is_none());
                    }
                }
                let id = drones[offset % 2];
                flights.extend(machine.on_packet(id, ts, throttle, 0, offset as i64));
            }
            flights.extend(machine.close_all());
            assert_eq!(flights, expected, "cut at {cut}");
        }
    }

    #[test]
    fn rule_json_is_the_contracts_shape_and_round_trips() {
        let json = rule_to_json(&FlightRule::default());
        assert_eq!(json, serde_json::json!({"throttle_threshold": 0.05, "idle_s": 10.0, "gap_s": 10.0, "min_s": 1.0}));
        let rule =
            FlightRule { throttle_threshold: 0.1, idle_window_us: 5_500_000, gap_us: 7_000_000, min_duration_us: 0 };
        assert_eq!(rule_from_json(&rule_to_json(&rule)), Some(rule));
        assert_eq!(rule_from_json(&serde_json::json!({"idle_s": 5.0})), None);
    }

    #[test]
    fn rule_deserialises_with_defaults_and_rejects_unknown_keys() {
        let rule: FlightRule = serde_json::from_str(r#"{"gap_us": 5000000}"#).unwrap();
        assert_eq!(rule.gap_us, 5_000_000);
        assert_eq!(rule.throttle_threshold, 0.05);
        assert!(serde_json::from_str::<FlightRule>(r#"{"gap": 1}"#).is_err());
    }
}
