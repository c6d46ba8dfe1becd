//! Helpers for running one test body on every device.
//!
//! ```ignore
//! kiln_device::device_test!(adds, |device| {
//!     let x = RawTensor::from_slice(&[1.0f32], [1], &device).unwrap();
//!     assert_eq!(x.binary(BinaryOp::Add, &x).unwrap().to_vec::<f32>().unwrap(), vec![2.0]);
//! });
//! ```
//! expands to a module `adds` holding the tests `adds::cpu` and `adds::gpu`. The GPU test opens `Device::gpu()` (software adapters
//! allowed). Without an adapter it is skipped with a message — unless `KILN_REQUIRE_GPU=1`, which turns
//! a missing adapter into a failure (CI sets it).

use crate::Device;
pub use crate::gpu::GpuFault;

/// Whether `KILN_REQUIRE_GPU` asks for a missing GPU to fail tests.
pub fn gpu_required() -> bool {
    std::env::var("KILN_REQUIRE_GPU").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The GPU device for a test, or `None` (after printing why) when there is none and it is not required.
///
/// # Panics
/// When no adapter can be opened and `KILN_REQUIRE_GPU=1`.
pub fn gpu_for_tests() -> Option<Device> {
    match Device::gpu() {
        Ok(device) => {
            eprintln!("GPU tests run on {device}");
            Some(device)
        }
        Err(e) if gpu_required() => {
            panic!("KILN_REQUIRE_GPU=1 but no GPU device could be opened: {e}")
        }
        Err(e) => {
            eprintln!("skipping GPU test: {e} (set KILN_REQUIRE_GPU=1 to make this a failure)");
            None
        }
    }
}

/// Makes `device`'s GPU runtime raise `fault` where it next applies (allocation, submission,
/// readback or wait), to test that kiln turns driver faults into errors. Returns `false` on the CPU
/// device, which has no such faults.
pub fn inject_gpu_fault(device: &Device, fault: GpuFault) -> bool {
    match device {
        Device::Gpu(gpu) => {
            gpu.ctx.inject_fault(fault);
            true
        }
        Device::Cpu(_) => false,
    }
}

/// Defines the tests `<name>::cpu` and `<name>::gpu`, each running `body` with its device.
#[macro_export]
macro_rules! device_test {
    ($name:ident, |$device:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn cpu() {
                let $device = $crate::Device::cpu();
                $body
            }

            #[test]
            fn gpu() {
                if let Some($device) = $crate::testing::gpu_for_tests() {
                    $body
                }
            }
        }
    };
}
