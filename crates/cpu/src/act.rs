//! Activation functions in f64 (oracle) and f32 (fast path).

use foveate_core::Activation;

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

pub fn act_f64(a: Activation, x: f64) -> f64 {
    match a {
        Activation::None => x,
        Activation::GeluErf => 0.5 * x * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2)),
        Activation::GeluTanh => {
            0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh())
        }
        Activation::QuickGelu => x / (1.0 + (-1.702 * x).exp()),
        Activation::Silu => x / (1.0 + (-x).exp()),
    }
}

#[inline]
pub fn act_f32(a: Activation, x: f32) -> f32 {
    match a {
        Activation::None => x,
        Activation::GeluErf => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
        Activation::GeluTanh => {
            let u = SQRT_2_OVER_PI as f32 * (x + 0.044715 * x * x * x);
            0.5 * x * (1.0 + u.tanh())
        }
        Activation::QuickGelu => x / (1.0 + (-1.702 * x).exp()),
        Activation::Silu => x / (1.0 + (-x).exp()),
    }
}
