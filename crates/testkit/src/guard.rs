//! Guard tails: every output the matrix hands a backend lies at the front of a longer buffer whose
//! tail holds a sentinel byte pattern. The kernel sees a tensor of the op's output shape (a view
//! of the buffer's first bytes); after the launch the whole buffer is read back and a changed
//! sentinel fails the case with the first element past the end that was written.
//!
//! This catches the out-of-bounds writes the poison (NaN in the output itself) cannot: a last
//! tile that stores its padding rows, a grid that runs one block too far, a row stride that is
//! off by one on the final row.

use foveate_core::{Backend, Error, HostTensor, Result, Tensor, TensorDesc};

/// Guard elements past the end of each output (at least 4 KiB of sentinels in f32 and u32).
pub const GUARD_ELEMS: usize = 1024;
/// The sentinel byte (0xA5A5A5A5 is a small negative normal in f32/bf16, -0.0227 in f16).
pub const SENTINEL: u8 = 0xA5;

/// An output tensor with a sentinel tail behind it.
pub struct Guarded {
    /// What the kernel writes: the op's output descriptor over the buffer's first bytes.
    pub out: Tensor,
    /// The whole buffer (output + tail) as a flat tensor.
    whole: Tensor,
}

impl Guarded {
    /// Uploads `init` (the poisoned or initial output) followed by the sentinel tail.
    pub fn upload(backend: &dyn Backend, init: &HostTensor) -> Result<Guarded> {
        let dt = init.dtype();
        let mut bytes = init.bytes.clone();
        bytes.resize(bytes.len() + GUARD_ELEMS * dt.size(), SENTINEL);
        let whole_desc = TensorDesc::new(dt, vec![init.numel() + GUARD_ELEMS]);
        let whole = backend.upload(&HostTensor::from_bytes(whole_desc, bytes)?)?;
        let out = Tensor::new(whole.storage().clone(), init.desc.clone());
        Ok(Guarded { out, whole })
    }

    /// Reads the buffer back: the output, or an error naming the first guard element written.
    pub fn download(&self, backend: &dyn Backend) -> Result<HostTensor> {
        let all = backend.download(&self.whole)?;
        let desc = self.out.desc().clone();
        let body = desc.size_bytes();
        let esz = desc.dtype.size();
        let tail = &all.bytes[body..];
        if let Some(first) = tail.iter().position(|&b| b != SENTINEL) {
            let el = first / esz;
            let changed = tail
                .chunks(esz)
                .filter(|c| c.iter().any(|&b| b != SENTINEL))
                .count();
            let got: Vec<String> = tail[el * esz..(el + 1) * esz]
                .iter()
                .rev()
                .map(|b| format!("{b:02x}"))
                .collect();
            return Err(Error::Msg(format!(
                "wrote past the end of its output {desc}: element {} (guard element {el}) is 0x{} instead of the \
                 sentinel 0x{}; {changed} of the {GUARD_ELEMS} guard elements changed",
                desc.numel() + el,
                got.join(""),
                format!("{SENTINEL:02x}").repeat(esz),
            )));
        }
        let mut bytes = all.bytes;
        bytes.truncate(body);
        HostTensor::from_bytes(desc, bytes)
    }
}

/// Reads the first `t.desc()` bytes of `t`'s buffer, which may be longer (a guarded output):
/// for test doubles that inspect what a kernel wrote. Backends' own `download` need only take
/// tensors whose buffer is exactly their size.
pub fn read_front(backend: &dyn Backend, t: &Tensor) -> Result<HostTensor> {
    let esz = t.dtype().size();
    let have = t.storage().size_bytes();
    if have == t.desc().size_bytes() || !have.is_multiple_of(esz) {
        return backend.download(t);
    }
    let whole = Tensor::new(
        t.storage().clone(),
        TensorDesc::new(t.dtype(), vec![have / esz]),
    );
    let mut all = backend.download(&whole)?;
    all.bytes.truncate(t.desc().size_bytes());
    HostTensor::from_bytes(t.desc().clone(), all.bytes)
}
