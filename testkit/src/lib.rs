//! The test kit every Flightline test uses (dev-only).
