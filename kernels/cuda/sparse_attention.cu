// sparse_attention.cu: block-sparse attention (-DHEAD_DIM=D). The flash tile loop of
// attention_core.cuh driven by a tile class table: the host turns BlockLayout::class_table
// (per layout block) into classes per kernel tile (64 x 64 on tensor cores, 8 x 32 on the f32
// path; identical to the layout's table when the layout blocks are that size). Empty tiles are
// skipped before any load; Full tiles (fully inside kv_len) skip the element mask; Partial tiles
// test each element against the layout class and the base mask. Kernels sparse_<base mask>.
#include "attention_core.cuh"
FLASH_KERNEL(sparse_none, MASK_NONE, true)
FLASH_KERNEL(sparse_causal, MASK_CAUSAL, true)
FLASH_KERNEL(sparse_window, MASK_WINDOW, true)
