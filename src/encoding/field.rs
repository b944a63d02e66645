//! Names of the hash fields that hold a feature view's values in one entity's hash.

use std::io::Cursor;

/// What Feast's `helpers._mmh3(name)` returns: murmur3_32 of the UTF-8 bytes with seed
/// 0, as 4 bytes little-endian.
pub fn mmh3_field(name: &str) -> [u8; 4] {
    murmur3::murmur3_32(&mut Cursor::new(name.as_bytes()), 0)
        .expect("reading from an in-memory slice cannot fail")
        .to_le_bytes()
}

/// The hash field of feature `feature` of view `view` (`view` already carries the
/// `_v{N}` suffix when online versioning is on).
pub fn feature_field(view: &str, feature: &str) -> [u8; 4] {
    mmh3_field(&format!("{view}:{feature}"))
}

/// The hash field that holds the event time of the view's latest row: `_ts:{view}`.
pub fn timestamp_field(view: &str) -> Vec<u8> {
    format!("_ts:{view}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors asserted by Feast's own Redis unit tests.
    #[test]
    fn feature_fields_match_feast_unit_test_vectors() {
        assert_eq!(&feature_field("feature_view_1", "feature_10"), b"&m_9");
        assert_eq!(&feature_field("feature_view_1", "feature_11"), b"\xc37\x9a\xbf");
        assert_eq!(&feature_field("feature_view_1", "feature_12"), b"wr\xb5d");
        // Feast prefixes the view name even to an already qualified requested feature.
        assert_eq!(
            &feature_field("feature_view_1", "my-feature-view:feature1"),
            b"Si\x86J"
        );
    }

    #[test]
    fn mmh3_of_known_strings() {
        // murmur3_32 reference values (seed 0) from the algorithm's published test set.
        assert_eq!(mmh3_field(""), 0u32.to_le_bytes());
        assert_eq!(mmh3_field("hello"), 0x248b_fa47u32.to_le_bytes());
        assert_eq!(
            mmh3_field("The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723u32.to_le_bytes()
        );
    }

    #[test]
    fn mmh3_hashes_utf8_bytes() {
        assert_eq!(mmh3_field("vue:prix€"), feature_field("vue", "prix€"));
        assert_ne!(mmh3_field("a:b"), mmh3_field("a:c"));
    }

    #[test]
    fn timestamp_field_is_plain_utf8() {
        assert_eq!(timestamp_field("driver_hourly_stats"), b"_ts:driver_hourly_stats");
        assert_eq!(timestamp_field("fv_v2"), b"_ts:fv_v2");
    }
}
