// gelu_mlp.cu: the projector / ViT MLP, out = act(x . w1^T + b1) . w2^T + b2 (+ residual), as two
// tensor-core GEMMs whose epilogues carry the work: mlp_up_<act> fuses b1 and the activation,
// mlp_down fuses b2 and the residual. The hidden activation goes through device memory in the
// storage dtype (one [M, H] buffer), as it does in PyTorch. See gemm_core.cuh for the tiles.
// Built with QBITS (8 or 4) for a stage whose weight is int8/int4 (quant_core.cuh): the W tile
// is dequantised on load; the host picks the module per stage.
#include "gemm_core.cuh"
GEMM_KERNELS(mlp_up, 0)
GEMM_KERNEL(mlp_down, ACT_NONE, 0)
