#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fleetbook_engine::fuzzing::toml(data));
