//! Rough per-item timings of the hot paths of the wire contract, on packets of the `sim` airframe
//! (the generator every bench uses).
//!
//! `cargo run --release -p schemas --example bench --features generic` (single-threaded; one
//! core). The `generic` feature compiles apache-avro's generic codec, the baseline.

use std::hint::black_box;
use std::time::Instant;

use schemas::avro::generic;
use schemas::{decode_telemetry, encode_telemetry, parse_batch, TelemetryRecord};
use uuid::Uuid;

fn time(label: &str, items: usize, mut run: impl FnMut()) {
    // Warm up, then take the best of five rounds.
    run();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        run();
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "{label:<48} {:>8.3} µs/item  ({:>9.0} items/s on one core)",
        best * 1e6 / items as f64,
        items as f64 / best
    );
}

fn main() {
    let now_us = 1_777_640_000_000_000;
    // 10 000 packets of the `sim` airframe at 50 Hz (every field, `extra` included), 500 a body.
    let flight = sim::flight(0, 50.0, 10_000);
    let start_us = now_us - 300_000_000;
    let bodies: Vec<Vec<u8>> = flight
        .chunks(500)
        .enumerate()
        .map(|(batch, samples)| {
            let mut body = Vec::new();
            let first = batch as i64 * 500;
            let timed = samples.iter().enumerate().map(|(n, sample)| (start_us + (first + n as i64) * 20_000, sample));
            sim::Sample::write_batch(timed, &mut body);
            body
        })
        .collect();
    let packets = bodies.len() * 500;
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    println!("packet JSON: {} bytes/packet", bytes / packets);

    time("parse_batch (500-packet bodies)", packets, || {
        for body in &bodies {
            black_box(parse_batch(black_box(body), now_us).unwrap());
        }
    });
    time("reference: serde_json::from_slice::<Vec<Value>>", packets, || {
        for body in &bodies {
            black_box(serde_json::from_slice::<Vec<serde_json::Value>>(black_box(body)).unwrap());
        }
    });

    let drone = Uuid::from_u128(0x0b7c3f4e_2d1a_4c5b_9e8f_7a6b5c4d3e2f);
    let records: Vec<TelemetryRecord> = bodies
        .iter()
        .flat_map(|body| parse_batch(body, now_us).unwrap())
        .map(|packet| TelemetryRecord::from_packet(drone, now_us, packet))
        .collect();
    let encoded: Vec<Vec<u8>> = records.iter().map(encode_telemetry).collect();
    println!("avro message: {} bytes/record", encoded[0].len());
    assert!(encoded.iter().zip(&records).all(|(bytes, record)| generic::encode_telemetry(record) == *bytes));

    time("encode_telemetry (hand-written)", records.len(), || {
        for record in &records {
            black_box(encode_telemetry(black_box(record)));
        }
    });
    let mut buffer = Vec::with_capacity(512);
    time("encode_telemetry_into (reused buffer)", records.len(), || {
        for record in &records {
            buffer.clear();
            schemas::avro::encode_telemetry_into(black_box(record), &mut buffer);
            black_box(&buffer);
        }
    });
    time("encode via apache-avro Value (generic)", records.len(), || {
        for record in &records {
            black_box(generic::encode_telemetry(black_box(record)));
        }
    });
    time("decode_telemetry (hand-written, current writer)", encoded.len(), || {
        for bytes in &encoded {
            black_box(decode_telemetry(black_box(bytes)).unwrap());
        }
    });
    time("decode via apache-avro + resolution (old writers)", encoded.len(), || {
        for bytes in &encoded {
            black_box(generic::decode_telemetry(black_box(bytes)).unwrap());
        }
    });
    time("TelemetryRecord::to_json().to_string()", records.len(), || {
        for record in &records {
            black_box(record.to_json().to_string());
        }
    });
    time("serde_json::to_string(&record.json_view())", records.len(), || {
        for record in &records {
            black_box(serde_json::to_string(&record.json_view()).unwrap());
        }
    });
    time("format_ts", records.len(), || {
        for record in &records {
            black_box(schemas::format_ts(black_box(record.ts_us)));
        }
    });
}
