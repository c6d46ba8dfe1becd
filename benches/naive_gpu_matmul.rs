//! One-off comparison: kiln's tiled GEMM against a naive one-thread-per-output WGSL matmul, both on
//! `Device::gpu()`'s adapter. Run once to justify the tiled kernel (figures in BENCHMARKS.md); the naive
//! kernel is not part of kiln.
//!
//! `cargo bench --bench naive_gpu_matmul`

use std::time::Instant;

use kiln::prelude::*;

const NAIVE: &str = r#"
struct Dims { n: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let n = dims.n;
    if id.x >= n || id.y >= n { return; }
    var acc = 0.0;
    for (var k = 0u; k < n; k = k + 1u) { acc = acc + a[id.y * n + k] * b[k * n + id.x]; }
    c[id.y * n + id.x] = acc;
}
"#;

fn naive_gflops(n: u32, reps: u32) -> f64 {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .unwrap();
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let bytes = u64::from(n * n * 4);
    let storage = |usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage,
            mapped_at_creation: false,
        })
    };
    let (a, b, c) = (
        storage(wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST),
        storage(wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST),
        storage(wgpu::BufferUsages::STORAGE),
    );
    let ones = vec![1.0f32; (n * n) as usize];
    queue.write_buffer(&a, 0, bytemuck_cast(&ones));
    queue.write_buffer(&b, 0, bytemuck_cast(&ones));
    let dims = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(
        &dims,
        0,
        &[n.to_le_bytes(), [0; 4], [0; 4], [0; 4]].concat(),
    );
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(NAIVE.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: dims.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: a.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: b.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 3,
                resource: c.as_entire_binding(),
            },
        ],
    });
    let run = || {
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(n.div_ceil(16), n.div_ceil(16), 1);
        }
        queue.submit([encoder.finish()]);
        device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    };
    run();
    let start = Instant::now();
    for _ in 0..reps {
        run();
    }
    2.0 * f64::from(n).powi(3) * f64::from(reps) / start.elapsed().as_secs_f64() / 1e9
}

fn bytemuck_cast(values: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), values.len() * 4) }
}

fn tiled_gflops(device: &Device, n: usize, reps: u32) -> f64 {
    let a = RawTensor::ones([n, n], DType::F32, device).unwrap();
    let b = RawTensor::ones([n, n], DType::F32, device).unwrap();
    drop(a.matmul(&b).unwrap());
    device.synchronize().unwrap();
    let start = Instant::now();
    for _ in 0..reps {
        drop(a.matmul(&b).unwrap());
        device.synchronize().unwrap();
    }
    2.0 * (n as f64).powi(3) * f64::from(reps) / start.elapsed().as_secs_f64() / 1e9
}

fn main() {
    let device = match Device::gpu() {
        Ok(device) => device,
        Err(e) => return eprintln!("no GPU adapter: {e}"),
    };
    println!("adapter: {device}");
    println!(
        "{:>6} {:>14} {:>14} {:>8}",
        "n", "naive GFLOP/s", "tiled GFLOP/s", "speedup"
    );
    for n in [256u32, 512, 1024] {
        let reps = if n >= 1024 { 2 } else { 5 };
        let naive = naive_gflops(n, reps);
        let tiled = tiled_gflops(&device, n as usize, reps);
        println!("{n:>6} {naive:>14.1} {tiled:>14.1} {:>7.1}x", tiled / naive);
    }
}
