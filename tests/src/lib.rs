//! Shared helpers for the integration tests live in tests/common; this crate builds the scenario helper.
