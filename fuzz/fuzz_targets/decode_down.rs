//! Arbitrary bytes as a frame on a node's down topic: `decode` must return an error or
//! a message, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_api::protocol::{Down, NodeKey, TopicKind, decode, topic};

fuzz_target!(|data: &[u8]| {
    let key = NodeKey::from_bytes([7; 32]);
    let t = topic("edge-1", TopicKind::Down);
    let _ = decode::<Down>(&key, &t, data);
});
