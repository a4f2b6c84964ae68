//! Schema upgrades, one file per step, run in order by `Index::open_with` (each safe to repeat after a crash:
//! the version is written only once a step is whole).

mod v0_to_v1_rid_cache;
mod v1_to_v2_commit_keys;
mod v2_to_v3_bundles;
mod v3_to_v4_feeds;
mod v4_to_v5_compact_keys;
