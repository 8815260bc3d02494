//! The safetensors header and tensor table as `Weights` validates them when a checkpoint opens.
//! Whatever the bytes, the parser returns an error or a table whose byte ranges lie inside the
//! file, match their shapes and do not overlap.
#![no_main]

use foveate_models::weights::parse_safetensors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(tensors) = parse_safetensors("fuzz.safetensors", data) else {
        return;
    };
    let mut ranges: Vec<_> = tensors.iter().map(|(_, t)| t.byte_range()).collect();
    for ((name, t), r) in tensors.iter().zip(&ranges) {
        assert!(
            r.start <= r.end && r.end <= data.len(),
            "{name}: {r:?} outside {} bytes",
            data.len()
        );
        let elem = match t.dtype {
            foveate_models::weights::StoredDType::F32 => 4,
            _ => 2,
        };
        assert_eq!(t.shape.iter().product::<usize>() * elem, r.len(), "{name}");
    }
    ranges.retain(|r| !r.is_empty());
    ranges.sort_by_key(|r| r.start);
    for w in ranges.windows(2) {
        assert!(w[0].end <= w[1].start, "overlap {:?} {:?}", w[0], w[1]);
    }
});
