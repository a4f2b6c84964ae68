#![no_main]
// Differential: our RFC 8785 writer against serde_jcs on any JSON value.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    koi_github_indexer::fuzzing::canonical_json(data, |value| serde_jcs::to_vec(value).ok())
});
