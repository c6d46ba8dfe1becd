//! Compiled compute pipelines, cached by kernel, dtype, specialisation constants and variant: creating a
//! pipeline can take 100 ms, running one takes microseconds. Each pipeline's bind group layout is made
//! from naga's reflection of the bindings its entry point uses, with the parameter block (binding 0)
//! at a dynamic offset, so one bind group serves every dispatch on the same buffers.

use std::collections::HashMap;

use super::context::Locked;
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};

use super::gemm::TileShape;
use crate::DType;
use crate::shaders::Shader;

/// What a shader is compiled with in front of its own file (between the prelude and the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Variant {
    /// `shaders/gemm.wgsl`: the constants and unrolled register code of this tile.
    Tile(TileShape),
    /// `shaders/softmax.wgsl`, `reduce.wgsl`: row teams on subgroups (`teams_subgroup.wgsl`) or in
    /// workgroup memory (`teams_shared.wgsl`).
    Teams { subgroups: bool },
}

impl Variant {
    /// The WGSL that goes in front of the shader's file.
    pub(crate) fn header(self) -> String {
        match self {
            Variant::Tile(tile) => tile.header(),
            Variant::Teams { subgroups: true } => {
                include_str!("../../../../shaders/teams_subgroup.wgsl").to_string()
            }
            Variant::Teams { subgroups: false } => {
                include_str!("../../../../shaders/teams_shared.wgsl").to_string()
            }
        }
    }
}

/// The most `override` constants one kernel sets.
const MAX_CONSTANTS: usize = 4;

/// One compute entry point with its specialisation. Plain data (no heap): launchers build one per
/// dispatch, and the pipeline cache looks it up with a cheap hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Kernel {
    /// The WGSL file.
    pub(crate) shader: Shader,
    /// The `@compute` function.
    pub(crate) entry: &'static str,
    /// The element type the kernel computes in.
    pub(crate) dtype: DType,
    /// Values of the shader's `override` constants (the first `constant_count`).
    constants: [(&'static str, u32); MAX_CONSTANTS],
    constant_count: u8,
    /// What the shader is compiled with in front of its file (GEMM tile, row teams).
    pub(crate) variant: Option<Variant>,
}

impl Kernel {
    /// A kernel without override constants.
    pub(crate) fn new(shader: Shader, entry: &'static str, dtype: DType) -> Self {
        Kernel {
            shader,
            entry,
            dtype,
            constants: [("", 0); MAX_CONSTANTS],
            constant_count: 0,
            variant: None,
        }
    }

    /// The `override` constants set.
    pub(crate) fn constants(&self) -> &[(&'static str, u32)] {
        &self.constants[..usize::from(self.constant_count)]
    }

    /// `file::entry` and the specialisation, for the profiler: `gemm.wgsl::gemm_main MODE=1`.
    pub(crate) fn describe(&self) -> String {
        let mut text = format!("{}::{}", self.shader.file_name(), self.entry);
        if let Some(Variant::Teams { subgroups }) = self.variant {
            text += if subgroups { " subgroups" } else { " shared" };
        }
        for (name, value) in self.constants() {
            text += &format!(" {name}={value}");
        }
        text
    }

    /// Compiles the kernel with row teams on subgroups or in workgroup memory.
    pub(crate) fn with_teams(mut self, subgroups: bool) -> Self {
        self.variant = Some(Variant::Teams { subgroups });
        self
    }

    /// Sets an `override` constant (launchers set at most [`MAX_CONSTANTS`]).
    pub(crate) fn with(mut self, name: &'static str, value: u32) -> Self {
        let slot = usize::from(self.constant_count);
        assert!(
            slot < MAX_CONSTANTS,
            "a kernel takes at most {MAX_CONSTANTS} constants"
        );
        self.constants[slot] = (name, value);
        self.constant_count += 1;
        self
    }
}

/// A pipeline and the layout of its bind group 0.
pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    /// The parameter block is bound at a dynamic offset (the layout came from reflection), so bind
    /// groups can be cached; else each dispatch binds its own slot.
    pub(crate) dynamic_params: bool,
}

/// A compiled shader module and naga's reflection of it.
#[derive(Clone)]
struct Module {
    module: wgpu::ShaderModule,
    reflection: Option<Arc<(naga::Module, naga::valid::ModuleInfo)>>,
}

/// Shader modules and pipelines created so far.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<(Shader, Option<Variant>), Module>>,
    pipelines: Mutex<FxHashMap<Kernel, Arc<Pipeline>>>,
}

/// The bind group layout entries of the bindings `entry` uses (group 0): the parameter block (binding
/// 0) a uniform at a dynamic offset, the others storage buffers, read-only unless the shader writes
/// them. `None` when the reflection has no such entry point.
fn layout_entries(
    reflection: &(naga::Module, naga::valid::ModuleInfo),
    entry: &str,
) -> Option<Vec<wgpu::BindGroupLayoutEntry>> {
    let (module, info) = reflection;
    let index = module.entry_points.iter().position(|e| e.name == entry)?;
    let uses = info.get_entry_point(index);
    let mut entries = Vec::new();
    for (handle, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else {
            continue;
        };
        if binding.group != 0 || uses[handle].is_empty() {
            continue;
        }
        let ty = match var.space {
            naga::AddressSpace::Uniform => wgpu::BufferBindingType::Uniform,
            naga::AddressSpace::Storage { access } => wgpu::BufferBindingType::Storage {
                read_only: !access.contains(naga::StorageAccess::STORE),
            },
            _ => continue,
        };
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: binding.binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: binding.binding == 0,
                min_binding_size: None,
            },
            count: None,
        });
    }
    Some(entries)
}

impl PipelineCache {
    /// The pipeline of `kernel` if it is compiled.
    pub(crate) fn cached(&self, kernel: &Kernel) -> Option<Arc<Pipeline>> {
        self.pipelines.locked().get(kernel).cloned()
    }

    /// Drops `kernel`'s pipeline and its shader module (after they failed to compile).
    pub(crate) fn forget(&self, kernel: &Kernel) {
        self.pipelines.locked().remove(kernel);
        self.modules
            .locked()
            .remove(&(kernel.shader, kernel.variant));
    }

    /// Compiles the pipeline of `kernel` (callers look in [`PipelineCache::cached`] first).
    /// Compilation errors are caught by the caller's error scope.
    pub(crate) fn compile(&self, device: &wgpu::Device, kernel: &Kernel) -> Arc<Pipeline> {
        let module = {
            let mut modules = self.modules.locked();
            modules
                .entry((kernel.shader, kernel.variant))
                .or_insert_with(|| {
                    let header = kernel.variant.map(Variant::header).unwrap_or_default();
                    let source = kernel.shader.source_with(&header);
                    // Reflection for the layouts; a shader naga cannot read here fails in wgpu below
                    // with the real message.
                    let reflection = naga::front::wgsl::parse_str(&source).ok().and_then(|m| {
                        let info = naga::valid::Validator::new(
                            naga::valid::ValidationFlags::all(),
                            naga::valid::Capabilities::all(),
                        )
                        .validate(&m)
                        .ok()?;
                        Some(Arc::new((m, info)))
                    });
                    let desc = wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.shader.file_name()),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    };
                    // SAFETY: kiln's kernels bound every index they compute by the sizes in their
                    // parameter block (which the launchers derive from the bound buffers), so the
                    // runtime bounds checks wgpu would add are redundant; dropping them is worth ~1.5x.
                    // Every kernel runs under the fixture and edge-case tests at sizes that are not
                    // multiples of its tiles.
                    let module = unsafe {
                        device.create_shader_module_trusted(
                            desc,
                            wgpu::ShaderRuntimeChecks::unchecked(),
                        )
                    };
                    Module { module, reflection }
                })
                .clone()
        };
        let layout = module
            .reflection
            .as_deref()
            .and_then(|r| layout_entries(r, kernel.entry))
            .map(|entries| {
                device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(kernel.entry),
                    entries: &entries,
                })
            });
        let pipeline_layout = layout.as_ref().map(|layout| {
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.entry),
                bind_group_layouts: &[Some(layout)],
                immediate_size: 0,
            })
        });
        let constants: Vec<(&str, f64)> = kernel
            .constants()
            .iter()
            .map(|&(k, v)| (k, f64::from(v)))
            .collect();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: pipeline_layout.as_ref(),
            module: &module.module,
            entry_point: Some(kernel.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let dynamic_params = layout.is_some();
        let layout = layout.unwrap_or_else(|| pipeline.get_bind_group_layout(0));
        let compiled = Arc::new(Pipeline {
            pipeline,
            layout,
            dynamic_params,
        });
        self.pipelines
            .lock()
            .unwrap()
            .insert(*kernel, compiled.clone());
        compiled
    }

    /// Number of pipelines compiled.
    pub(crate) fn len(&self) -> usize {
        self.pipelines.locked().len()
    }
}
