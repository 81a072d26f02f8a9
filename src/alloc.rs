//! Process-wide allocator settings: the crate's only `unsafe` (one FFI call).
//!
//! The reference engine allocates its f64 matrices per sample (half a MiB each at P = 256). Under
//! glibc's default, self-adjusting thresholds, memory freed at the top of a worker thread's heap
//! is handed back to the kernel and faulted in again by the next sample: about 165 000 page
//! faults per MAE step of the default benchmark model, a fifth of the reference's step time on
//! the README's machine. Whether it happened depended on what the process had allocated and freed
//! before (the thresholds only rise after a large block is freed), so the same reference step
//! measured 515–560 ms in a process of its own and 424–435 ms after other benchmark variants
//! (414–430 ms with the thresholds raised through `GLIBC_TUNABLES`), and every ratio against it
//! moved with that. [`retain_freed_memory`] fixes both thresholds at the
//! start of the binary and of every bench, so freed memory stays with the process and the
//! reference runs fault-free wherever it runs. The fast engine allocates its buffers once and is
//! unaffected.

/// Sets glibc's mmap threshold to its maximum (32 MiB on 64-bit targets: smaller blocks come from
/// the heap) and its trim threshold to 1 GiB (free memory at the top of a heap is kept), which
/// also stops glibc from adjusting them. Returns whether both settings took; a no-op that returns
/// `false` on other C libraries. Call it once, at the start of a program.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` takes two integers and only changes allocator parameters, under
        // glibc's own arena locks; any value is accepted or refused (return value 0).
        let mmap = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) };
        // SAFETY: as above.
        let trim = unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) };
        mmap == 1 && trim == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_both_thresholds() {
        assert!(super::retain_freed_memory());
    }
}
