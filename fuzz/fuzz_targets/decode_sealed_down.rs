//! Arbitrary plaintexts sealed with the node's key, so fuzzing reaches the JSON parsing
//! and schema checks behind the authentication that stops random frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_api::protocol::{Down, NodeKey, TopicKind, decode, seal, topic};

fuzz_target!(|data: &[u8]| {
    let key = NodeKey::from_bytes([7; 32]);
    let t = topic("edge-1", TopicKind::Down);
    let frame = seal(&key, &t, [0; 24], data);
    if let Ok(msg) = decode::<Down>(&key, &t, &frame) {
        // Whatever decodes must survive a round trip through its own encoding.
        let again = serde_json::to_vec(&msg);
        assert!(again.is_ok());
    }
});
