// Shared by every foveate WGSL module. The host prepends the specialisation header
// (`enable f16;`, `alias T = ...;`, `const NAME = ...;`) and resolves `#if NAME` / `#else` /
// `#endif` lines before handing the source to naga.
//
// Launch parameters live in one small uniform block (binding 0) read through `p(i)`; floats
// travel bit-cast (`pf(i)`). Values read from a uniform buffer are uniform, so they may steer
// loops that contain barriers.

@group(0) @binding(0) var<uniform> P: array<vec4<u32>, 8>;

fn p(i: u32) -> u32 {
    return P[i / 4u][i % 4u];
}

fn pf(i: u32) -> f32 {
    return bitcast<f32>(p(i));
}

// Stand-in for -infinity: a masked score. exp2(NEG - m) is 0 for any real m.
const NEG: f32 = -3.0e38;
const LOG2E: f32 = 1.4426950408889634;

// Flat invocation index for 1-D work spread over a 2-D grid (65535 workgroups per dimension).
fn flat_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, wg: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * wg + lid;
}

// erf with |error| < 1.5e-7 (Abramowitz & Stegun 7.1.26); WGSL has no erf builtin.
fn erf_f32(x: f32) -> f32 {
    let ax = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * exp(-ax * ax);
    return select(-y, y, x >= 0.0);
}

fn sigmoid_f32(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// Activation codes: 0 none, 1 gelu (erf), 2 gelu (tanh), 3 quick_gelu, 4 silu.
fn activate(x: f32, act: u32) -> f32 {
    switch act {
        case 1u: {
            return 0.5 * x * (1.0 + erf_f32(x * 0.7071067811865476));
        }
        case 2u: {
            // tanh's argument is clamped: some drivers return NaN for large |x|.
            let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
            return 0.5 * x * (1.0 + tanh(u));
        }
        case 3u: {
            return x * sigmoid_f32(1.702 * x);
        }
        case 4u: {
            return x * sigmoid_f32(x);
        }
        default: {
            return x;
        }
    }
}
