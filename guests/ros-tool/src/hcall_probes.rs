//! `hvm raw` and `hvm flood`: probes of the hypercall port itself (any register values; many
//! VERSIONs).

use std::time::Instant;

use abi::{HcallError, Op, ABI_VERSION};

use crate::error::Error;
use crate::hcall::Port;

/// `hvm raw`: `rax=.. rbx=.. rcx=.. rdx=..`, plus `error=NAME code=N` when RAX is an error code.
pub fn raw(port: &Port, rax: u64, args: [u64; 5]) {
    // SAFETY: a deliberate probe with whatever the user typed; if the arguments name our memory
    // the VMM may write there, and this process reads none of it afterwards.
    let [a, b, c, d] = unsafe { port.raw(rax, args) };
    let err = HcallError::from_code(a as i64).map(|e| format!(" error={} code={}", e.name(), e.code()));
    out!("rax={a:#x} rbx={b:#x} rcx={c:#x} rdx={d:#x}{}", err.unwrap_or_default());
}

/// `hvm flood N`: N VERSION hypercalls; any error or wrong answer is counted and fails the run.
pub fn flood(port: &Port, n: u64) -> Result<(), Error> {
    let start = Instant::now();
    let (mut errors, mut first) = (0u64, None);
    for _ in 0..n {
        match port.call(Op::Version, [0; 5]) {
            Ok(r) if r.rbx == ABI_VERSION => {}
            Ok(r) => {
                errors += 1;
                first.get_or_insert_with(|| format!("VERSION answered {}", r.rbx));
            }
            Err(Error::Failed(e) | Error::Usage(e)) => {
                errors += 1;
                first.get_or_insert(e);
            }
        }
    }
    let us = start.elapsed().as_micros();
    if errors == 0 {
        out!("flood={n} ok elapsed_us={us}");
        Ok(())
    } else {
        out!("flood={n} errors={errors} elapsed_us={us}");
        Err(Error::failed(format!("{errors} of {n} hypercalls failed; first: {}", first.unwrap_or_default())))
    }
}
