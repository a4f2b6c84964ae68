#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| koi_github_indexer::fuzzing::rid(data));
