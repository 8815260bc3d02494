//! The kernel-variant registry. Each backend lists, per op family, the variants it implements
//! and the dtypes each one supports; tests and benches iterate over it, so a variant is tested and
//! benchmarked as soon as it is registered.

use crate::{AttentionSpec, DType, Mask, OpKind};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VariantInfo {
    pub op: OpKind,
    /// e.g. `naive`, `flash`, `flash-decode`, `block-sparse`, `tiled`, `oracle`.
    pub name: &'static str,
    pub dtypes: Vec<DType>,
    /// One line: what the variant does and where it applies.
    pub note: &'static str,
}

impl VariantInfo {
    pub fn new(op: OpKind, name: &'static str, dtypes: &[DType], note: &'static str) -> Self {
        VariantInfo { op, name, dtypes: dtypes.to_vec(), note }
    }
}

/// Attention variant names, shared by every backend that implements them.
pub mod attention {
    pub const NAIVE: &str = "naive";
    pub const FLASH: &str = "flash";
    pub const FLASH_DECODE: &str = "flash-decode";
    pub const BLOCK_SPARSE: &str = "block-sparse";
    pub const ALL: [&str; 4] = [NAIVE, FLASH, FLASH_DECODE, BLOCK_SPARSE];
}

/// The one default-variant policy: which registered attention variant runs `spec` when the
/// caller asked for the kernel family `family` (`""`: the backend's default, i.e. flash with the
/// fallbacks below). Every backend resolves an empty variant through this and the graph resolves
/// `--attention` through it, so no backend keeps a default of its own; a new attention variant
/// becomes a default only by a line here.
///
/// Candidates, in order, each kept only if `supports` accepts it for this shape and dtype:
/// - a block-sparse mask: `block-sparse` (naive also takes it);
/// - one query row (decode) under flash: `flash-decode` (KV split across blocks), then `flash`;
/// - otherwise the family itself;
/// - the empty family ends with `naive`, the variant every backend runs for every shape.
///
/// When no candidate fits, the error is the first candidate's reason.
pub fn pick_attention(
    family: &str,
    spec: &AttentionSpec,
    supports: &dyn Fn(&'static str) -> Result<(), String>,
) -> Result<&'static str, String> {
    use attention::*;
    let sparse = matches!(spec.mask, Mask::BlockSparse(_));
    let mut order: Vec<&'static str> = match family {
        NAIVE => vec![NAIVE],
        "" | FLASH | BLOCK_SPARSE if sparse => vec![BLOCK_SPARSE],
        "" | FLASH if spec.q_len == 1 => vec![FLASH_DECODE, FLASH],
        "" | FLASH => vec![FLASH],
        BLOCK_SPARSE => vec![BLOCK_SPARSE],
        FLASH_DECODE => vec![FLASH_DECODE],
        other => return Err(format!("unknown attention family `{other}` (naive, flash, flash-decode, block-sparse)")),
    };
    if family.is_empty() {
        order.push(NAIVE);
    }
    let mut first = None;
    for v in order {
        match supports(v) {
            Ok(()) => return Ok(v),
            Err(why) => {
                first.get_or_insert(format!("{v}: {why}"));
            }
        }
    }
    Err(first.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::attention::*;
    use super::*;
    use crate::BlockLayout;
    use std::sync::Arc;

    fn spec(q_len: usize, mask: Mask) -> AttentionSpec {
        AttentionSpec { batch: 1, q_heads: 2, kv_heads: 2, q_len, kv_len: 32, kv_capacity: 32, head_dim: 16, scale: 0.25, mask }
    }

    #[test]
    fn decode_routes_to_flash_decode_where_registered() {
        let all = |_: &str| Ok(());
        let no_decode = |v: &str| if v == FLASH_DECODE { Err("not registered".to_string()) } else { Ok(()) };
        assert_eq!(pick_attention(FLASH, &spec(1, Mask::Causal), &all), Ok(FLASH_DECODE));
        assert_eq!(pick_attention("", &spec(1, Mask::Causal), &all), Ok(FLASH_DECODE));
        assert_eq!(pick_attention(FLASH, &spec(1, Mask::Causal), &no_decode), Ok(FLASH));
        assert_eq!(pick_attention(FLASH, &spec(5, Mask::Causal), &all), Ok(FLASH));
        assert_eq!(pick_attention(NAIVE, &spec(1, Mask::Causal), &all), Ok(NAIVE));
    }

    #[test]
    fn sparse_masks_and_fallbacks() {
        let all = |_: &str| Ok(());
        let l = Arc::new(BlockLayout::dense(16, 4, 32, Mask::Causal));
        assert_eq!(pick_attention("", &spec(4, Mask::BlockSparse(l.clone())), &all), Ok(BLOCK_SPARSE));
        assert_eq!(pick_attention(BLOCK_SPARSE, &spec(1, Mask::BlockSparse(l)), &all), Ok(BLOCK_SPARSE));
        // Only the empty family falls back to naive; an explicit one says why it cannot run.
        let only_naive = |v: &str| if v == NAIVE { Ok(()) } else { Err(format!("head dim too large for {v}")) };
        assert_eq!(pick_attention("", &spec(4, Mask::None), &only_naive), Ok(NAIVE));
        let e = pick_attention(FLASH, &spec(4, Mask::None), &only_naive).unwrap_err();
        assert!(e.contains("flash: head dim too large"), "{e}");
        assert!(pick_attention("dense", &spec(4, Mask::None), &all).unwrap_err().contains("unknown attention family"));
    }
}
