//! Lists every GPU adapter wgpu can see and says which device `Device::auto()` picks, and why.
//!
//! ```text
//! cargo run --example devices                  # what auto() picks here
//! KILN_DEVICE=gpu cargo run --example devices  # force a GPU adapter (lavapipe counts)
//! WGPU_BACKEND=vulkan cargo run --example devices
//! ```

use kiln::prelude::*;

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

fn main() {
    let adapters = Device::list_adapters();
    println!("GPU adapters ({}):", adapters.len());
    if adapters.is_empty() {
        println!(
            "  none (on Linux, `apt-get install mesa-vulkan-drivers` adds the software lavapipe adapter)"
        );
    }
    for a in &adapters {
        println!("  {} [{}; {}]", a.name, a.backend, a.device_type);
        println!(
            "    f16: {}  subgroups: {}  timestamps: {}  max binding: {} MiB  max workgroup: {} threads, {} KiB shared",
            yes_no(a.shader_f16),
            yes_no(a.subgroup),
            yes_no(a.timestamp_query),
            a.max_binding_bytes >> 20,
            a.max_workgroup_invocations,
            a.max_workgroup_memory_bytes >> 10,
        );
        if !a.driver.is_empty() {
            println!("    driver: {}", a.driver);
        }
    }
    let (device, reason) = Device::auto_with_reason();
    println!();
    println!("Device::auto() chose {device}");
    println!("  because: {reason}");
}
