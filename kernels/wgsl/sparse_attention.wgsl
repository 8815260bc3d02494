// Block-sparse attention: the flash kernel of attention.wgsl (compiled with SPARSE) reads the
// class of each tile from a block layout's class table (BlockLayout::class_table: row-major
// q_blocks x k_blocks, 0 empty, 1 partial, 2 full). Empty tiles are never loaded, full tiles skip
// the element mask, partial tiles apply the layout's base mask. The host picks BQ | block_q and
// BK | block_k, so every kernel tile lies inside one layout block.

@group(0) @binding(6) var<storage, read> CLASS: array<u32>;

fn sparse_class(q0: u32, kt: u32) -> u32 {
    let c = CLASS[(q0 / p(9)) * p(8) + kt / p(10)];
    if c == 0u {
        return 0u;
    }
    // Kept block: the base mask decides, and may still rule the whole tile out (0) or in (2).
    let d = dense_class(q0, kt);
    if d == 0u {
        return 0u;
    }
    return max(c, d);
}
