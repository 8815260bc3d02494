//! Which instruction set the fast path's hand-written row kernels run on, chosen once per process
//! from what the CPU has (and `FOVEATE_CPU_ISA`, which can only lower it):
//!
//! * `avx512`: AVX-512 F/BW/VL with VNNI: int8/int4 weights against int8 activations with
//!   `vpdpbusd` (64 products per instruction, summed exactly in i32), two groups of 32 per
//!   register; every other kernel as `avx2`.
//! * `avx2`: AVX2 + FMA + F16C: int8/int4 through `vpmaddubsw` + `vpmaddwd`, f16/bf16/quantised
//!   weights converted in registers.
//! * `scalar`: plain loops, on any CPU (an ARM CPU runs this path).
//!
//! `foveate info` prints the chosen path and the ones this CPU could run; bench JSON records it in
//! the device name. `FOVEATE_CPU_SCALAR=1` (older spelling) is `FOVEATE_CPU_ISA=scalar`.

use std::sync::OnceLock;

/// A kernel path, ordered: each one needs what the one before it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The CPU features the path needs.
    pub fn needs(self) -> &'static str {
        match self {
            Isa::Scalar => "nothing",
            Isa::Avx2 => "avx2, fma, f16c",
            Isa::Avx512 => "avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512vnni",
        }
    }

    /// Can this CPU run the path?
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Isa::Scalar => true,
                Isa::Avx2 => has!("avx2") && has!("fma") && has!("f16c"),
                Isa::Avx512 => {
                    Isa::Avx2.supported()
                        && has!("avx512f")
                        && has!("avx512bw")
                        && has!("avx512vl")
                        && has!("avx512vnni")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Scalar
        }
    }

    /// The widest path this CPU runs.
    pub fn best() -> Isa {
        *Isa::ALL.iter().rev().find(|i| i.supported()).unwrap_or(&Isa::Scalar)
    }

    /// Parses a `FOVEATE_CPU_ISA` value.
    pub fn parse(s: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == s)
    }
}

/// The path `cap` (a `FOVEATE_CPU_ISA` value, `None` when unset) selects on a CPU whose widest
/// path is `best`, and a warning when the request cannot be met as asked.
fn choose(cap: Option<&str>, best: Isa) -> (Isa, Option<String>) {
    let Some(cap) = cap.filter(|c| !c.is_empty()) else {
        return (best, None);
    };
    match Isa::parse(cap) {
        Some(i) if i <= best => (i, None),
        Some(i) => (
            best,
            Some(format!(
                "FOVEATE_CPU_ISA={cap}: this CPU lacks what {} needs ({}); running {}",
                i.name(),
                i.needs(),
                best.name()
            )),
        ),
        None => (
            best,
            Some(format!(
                "FOVEATE_CPU_ISA={cap} is not a kernel path (scalar, avx2, avx512); running {}",
                best.name()
            )),
        ),
    }
}

/// The path this process runs (read once; a request the CPU cannot meet warns on stderr).
pub fn selected() -> Isa {
    static ON: OnceLock<Isa> = OnceLock::new();
    *ON.get_or_init(|| {
        let scalar = std::env::var("FOVEATE_CPU_SCALAR").is_ok_and(|v| !v.is_empty() && v != "0");
        let cap = if scalar {
            Some("scalar".to_string())
        } else {
            std::env::var("FOVEATE_CPU_ISA").ok()
        };
        let (isa, warning) = choose(cap.as_deref(), Isa::best());
        if let Some(w) = warning {
            eprintln!("foveate-cpu: {w}");
        }
        isa
    })
}

/// The paths this CPU can run, narrowest first (what the tests run every kernel on).
pub fn runnable() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|i| i.supported()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_only_lowers_the_path() {
        assert_eq!(choose(None, Isa::Avx512), (Isa::Avx512, None));
        assert_eq!(choose(Some(""), Isa::Avx2), (Isa::Avx2, None));
        assert_eq!(choose(Some("avx2"), Isa::Avx512), (Isa::Avx2, None));
        assert_eq!(choose(Some("scalar"), Isa::Avx512), (Isa::Scalar, None));
        let (i, w) = choose(Some("avx512"), Isa::Avx2);
        assert_eq!(i, Isa::Avx2);
        assert!(w.unwrap().contains("avx512vnni"));
        let (i, w) = choose(Some("neon"), Isa::Scalar);
        assert_eq!(i, Isa::Scalar);
        assert!(w.unwrap().contains("not a kernel path"));
    }

    #[test]
    fn the_best_path_is_runnable_and_ordered() {
        let r = runnable();
        assert_eq!(r[0], Isa::Scalar);
        assert_eq!(*r.last().unwrap(), Isa::best());
        eprintln!("this CPU runs: {:?}", r);
    }
}
