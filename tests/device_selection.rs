//! How `Device::auto()` chooses, including the `KILN_DEVICE` override. One test, because it changes
//! the process environment.

use kiln::device::testing::gpu_required;
use kiln::prelude::*;

#[test]
fn auto_prefers_hardware_and_honours_kiln_device() {
    // SAFETY: this test binary has a single test, so nothing reads the environment concurrently.
    unsafe { std::env::remove_var("KILN_DEVICE") };
    let adapters = Device::list_adapters();
    let (device, reason) = Device::auto_with_reason();
    let has_hardware = adapters.iter().any(|a| !a.is_software);
    if has_hardware {
        assert!(
            device.is_gpu(),
            "auto() skipped a hardware adapter: {reason}"
        );
    } else {
        assert!(
            !device.is_gpu(),
            "auto() picked a software adapter: {reason}"
        );
        assert!(reason.contains("no hardware GPU adapter"), "{reason}");
    }

    unsafe { std::env::set_var("KILN_DEVICE", "cpu") };
    assert!(!Device::auto().is_gpu());

    unsafe { std::env::set_var("KILN_DEVICE", "gpu") };
    let (device, reason) = Device::auto_with_reason();
    if adapters.is_empty() {
        assert!(
            !gpu_required(),
            "KILN_REQUIRE_GPU=1 but wgpu lists no adapter"
        );
        assert!(
            !device.is_gpu() && reason.contains("falling back"),
            "{reason}"
        );
    } else {
        assert!(
            device.is_gpu(),
            "KILN_DEVICE=gpu did not choose a GPU: {reason}"
        );
        assert_eq!(reason, "KILN_DEVICE=gpu");
    }

    // An unknown value is ignored, not fatal.
    unsafe { std::env::set_var("KILN_DEVICE", "tpu") };
    let _ = Device::auto();
    unsafe { std::env::remove_var("KILN_DEVICE") };
}

#[test]
fn cpu_info_describes_the_native_backend() {
    let info = Device::cpu().info();
    assert_eq!(info.backend, "cpu");
    assert!(info.threads >= 1);
}
