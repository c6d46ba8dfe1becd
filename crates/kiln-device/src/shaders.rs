//! The WGSL sources in the repository's `shaders/` folder, compiled into the binary. Each is compiled
//! after `shaders/prelude.wgsl` (the parameter block and grid helpers every kernel shares).

/// One WGSL file, i.e. one kernel family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    /// `shaders/elementwise.wgsl`: unary, binary (broadcast) and scalar ops.
    Elementwise,
    /// `shaders/copy.wgsl`: contiguous copies, casts and fills.
    Copy,
    /// `shaders/gemm.wgsl`: the tiled GEMM behind matmul and conv2d.
    Gemm,
    /// `shaders/reduce.wgsl`: sum, mean, max, min, argmax along an axis.
    Reduce,
    /// `shaders/softmax.wgsl`: softmax and log-softmax, forward and backward.
    Softmax,
    /// `shaders/loss.wgsl`: fused cross-entropy, BCE-with-logits, MSE.
    Loss,
    /// `shaders/optimizer.wgsl`: fused Adam/AdamW and SGD updates.
    Optimizer,
    /// `shaders/pool.wgsl`: max and average pooling, forward and backward.
    Pool,
    /// `shaders/random.wgsl`: seeded uniform and normal values.
    Random,
    /// `shaders/index.wgsl`: row gather (index_select) and scatter-add.
    Index,
    /// `shaders/topk.wgsl`: the k largest or smallest elements of each row, with their indices.
    TopK,
    /// `shaders/recurrent.wgsl`: one LSTM or GRU cell step, forward and backward.
    Recurrent,
    /// `shaders/norm.wgsl`: per-channel sums and affine maps (batch normalisation).
    Norm,
}

impl Shader {
    /// Every shader file.
    #[cfg(test)]
    pub(crate) const ALL: [Shader; 13] = [
        Shader::Elementwise,
        Shader::Copy,
        Shader::Gemm,
        Shader::Reduce,
        Shader::Softmax,
        Shader::Loss,
        Shader::Optimizer,
        Shader::Pool,
        Shader::Random,
        Shader::Index,
        Shader::TopK,
        Shader::Recurrent,
        Shader::Norm,
    ];

    /// The file name under `shaders/`.
    pub(crate) fn file_name(self) -> &'static str {
        match self {
            Shader::Elementwise => "elementwise.wgsl",
            Shader::Copy => "copy.wgsl",
            Shader::Gemm => "gemm.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Softmax => "softmax.wgsl",
            Shader::Loss => "loss.wgsl",
            Shader::Optimizer => "optimizer.wgsl",
            Shader::Pool => "pool.wgsl",
            Shader::Random => "random.wgsl",
            Shader::Index => "index.wgsl",
            Shader::TopK => "topk.wgsl",
            Shader::Recurrent => "recurrent.wgsl",
            Shader::Norm => "norm.wgsl",
        }
    }

    /// The WGSL source after `header` (constants a shader expects from its launcher, such as the GEMM
    /// tile), which goes between the prelude and the kernel's own file.
    pub(crate) fn source_with(self, header: &str) -> String {
        let prelude = include_str!("../../../shaders/prelude.wgsl");
        let body = self.body();
        let mut source = String::with_capacity(prelude.len() + header.len() + body.len());
        source.push_str(prelude);
        source.push_str(header);
        source.push_str(body);
        source
    }

    /// The kernel file's own WGSL.
    fn body(self) -> &'static str {
        match self {
            Shader::Elementwise => include_str!("../../../shaders/elementwise.wgsl"),
            Shader::Copy => include_str!("../../../shaders/copy.wgsl"),
            Shader::Gemm => include_str!("../../../shaders/gemm.wgsl"),
            Shader::Reduce => include_str!("../../../shaders/reduce.wgsl"),
            Shader::Softmax => include_str!("../../../shaders/softmax.wgsl"),
            Shader::Loss => include_str!("../../../shaders/loss.wgsl"),
            Shader::Optimizer => include_str!("../../../shaders/optimizer.wgsl"),
            Shader::Pool => include_str!("../../../shaders/pool.wgsl"),
            Shader::Random => include_str!("../../../shaders/random.wgsl"),
            Shader::Index => include_str!("../../../shaders/index.wgsl"),
            Shader::TopK => include_str!("../../../shaders/topk.wgsl"),
            Shader::Recurrent => include_str!("../../../shaders/recurrent.wgsl"),
            Shader::Norm => include_str!("../../../shaders/norm.wgsl"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Parses and validates `source` with naga, applies the override `constants` of one
    /// specialisation, and translates the result to SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12),
    /// validating each step; a failure names the shader, the specialisation and the backend.
    fn validate(name: &str, source: &str, constants: &[(&str, f64)]) {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        let constants = constants.iter().map(|&(k, v)| (k.to_string(), v)).collect();
        let (module, info) =
            naga::back::pipeline_constants::process_overrides(&module, &info, None, &constants)
                .unwrap_or_else(|e| panic!("{name} with {constants:?}: {e}"));
        let failed = |backend: &str, e: &dyn std::fmt::Display| -> ! {
            panic!("{name} with {constants:?} for {backend}: {e}")
        };
        if let Err(e) =
            naga::back::spv::write_vec(&module, &info, &naga::back::spv::Options::default(), None)
        {
            failed("SPIR-V (Vulkan)", &e);
        }
        // Metal 2.4 (subgroup operations need 2.1+), HLSL shader model 6.2 (wave operations, f16).
        let msl = naga::back::msl::Options {
            lang_version: (2, 4),
            ..Default::default()
        };
        match naga::back::msl::write_string(&module, &info, &msl, &Default::default()) {
            Ok((text, _)) => assert!(text.contains("kernel void"), "{name}: no Metal kernel"),
            Err(e) => failed("MSL (Metal)", &e),
        }
        let hlsl = naga::back::hlsl::Options {
            shader_model: naga::back::hlsl::ShaderModel::V6_2,
            ..Default::default()
        };
        let mut out = String::new();
        if let Err(e) = naga::back::hlsl::Writer::new(&mut out, &hlsl, &Default::default())
            .write(&module, &info, None)
        {
            failed("HLSL (DX12)", &e);
        }
        assert!(
            out.contains("[numthreads("),
            "{name}: no HLSL compute entry point"
        );
    }

    /// Every `shaders/*.wgsl`, in every specialisation kiln compiles — the GEMM with every tile
    /// configuration and mode, the row kernels with both team variants, every elementwise op code
    /// with and without contiguous inputs, every reduce op, both softmax and loss forms, both norm
    /// modes — parses, validates and translates to SPIR-V, MSL and HLSL, so a shader that would
    /// break on Vulkan, Metal or DX12 fails here on any machine.
    #[test]
    fn every_shader_parses_validates_and_translates_for_every_backend() {
        use super::Shader;
        use crate::gpu::gemm::{TileShape, tile_configurations};
        use crate::gpu::pipelines::Variant;
        use crate::{BinaryOp, UnaryOp};
        for shader in Shader::ALL {
            let headers: Vec<String> = match shader {
                Shader::Gemm => {
                    let mut tiles = tile_configurations();
                    tiles.push(TileShape { bk: 9, ..tiles[3] });
                    tiles.iter().map(|t| t.header()).collect()
                }
                Shader::Softmax | Shader::Reduce => [true, false]
                    .map(|subgroups| Variant::Teams { subgroups }.header())
                    .to_vec(),
                _ => vec![String::new()],
            };
            let one = |name: &'static str, values: Vec<f64>| -> Vec<Vec<(&'static str, f64)>> {
                values.into_iter().map(|v| vec![(name, v)]).collect()
            };
            let specialisations: Vec<Vec<(&str, f64)>> = match shader {
                Shader::Gemm => one("MODE", (0..4).map(f64::from).collect()),
                Shader::Norm => one("MODE", (0..2).map(f64::from).collect()),
                Shader::Reduce => one("OP", (0..3).map(f64::from).collect()),
                Shader::Softmax => one("LOG", vec![0.0, 1.0]),
                Shader::Loss => one("SOFT", vec![0.0, 1.0]),
                Shader::Elementwise => {
                    let codes = UnaryOp::ALL
                        .iter()
                        .map(|op| op.shader_code())
                        .chain(BinaryOp::ALL.iter().map(|op| op.shader_code()));
                    codes
                        .flat_map(|code| {
                            [0.0, 1.0].map(|contiguous| {
                                vec![("OP", f64::from(code)), ("CONTIGUOUS", contiguous)]
                            })
                        })
                        .collect()
                }
                _ => vec![vec![]],
            };
            for header in &headers {
                let source = shader.source_with(header);
                let name = format!(
                    "{} with {}",
                    shader.file_name(),
                    header.lines().next().unwrap_or("")
                );
                for constants in &specialisations {
                    validate(&name, &source, constants);
                }
            }
        }
    }

    /// Every entry point binds at most eight storage buffers (WebGPU's default
    /// `maxStorageBuffersPerShaderStage`, which `GpuOptions::baseline` sets), so the weakest
    /// adapters can run every kernel; only the multi-parameter optimizer kernels bind more, and
    /// kiln uses them only where the adapter's limit allows (`gpu::optimizer::multi_supported`).
    #[test]
    fn every_entry_point_fits_in_eight_storage_buffers() {
        use super::Shader;
        use crate::gpu::pipelines::Variant;
        const ABOVE_THE_LIMIT_BY_DESIGN: [&str; 2] = ["adam_multi", "sgd_multi"];
        for shader in Shader::ALL {
            let headers: Vec<String> = match shader {
                Shader::Softmax | Shader::Reduce => [true, false]
                    .map(|subgroups| Variant::Teams { subgroups }.header())
                    .to_vec(),
                Shader::Gemm => vec![crate::gpu::gemm::tile_configurations()[0].header()],
                _ => vec![String::new()],
            };
            for header in headers {
                let source = shader.source_with(&header);
                let module = naga::front::wgsl::parse_str(&source).unwrap();
                let info = naga::valid::Validator::new(
                    naga::valid::ValidationFlags::all(),
                    naga::valid::Capabilities::all(),
                )
                .validate(&module)
                .unwrap();
                for (i, entry) in module.entry_points.iter().enumerate() {
                    let uses = info.get_entry_point(i);
                    let storage: Vec<&str> = (module.global_variables.iter())
                        .filter(|(handle, var)| {
                            matches!(var.space, naga::AddressSpace::Storage { .. })
                                && !uses[*handle].is_empty()
                        })
                        .map(|(_, var)| var.name.as_deref().unwrap_or("?"))
                        .collect();
                    if ABOVE_THE_LIMIT_BY_DESIGN.contains(&entry.name.as_str()) {
                        continue;
                    }
                    assert!(
                        storage.len() <= 8,
                        "{}: {} binds {} storage buffers ({}); WebGPU's default limit is 8",
                        shader.file_name(),
                        entry.name,
                        storage.len(),
                        storage.join(", ")
                    );
                }
            }
        }
    }

    /// Every file in `shaders/` is compiled into the binary through `Shader`.
    #[test]
    fn every_shader_file_is_registered() {
        use super::Shader;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shaders");
        let registered = Shader::ALL;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            // The prelude and the row-team helpers are compiled in front of other shaders.
            let header = name == "prelude.wgsl" || name.starts_with("teams_");
            if name.ends_with(".wgsl") && !header {
                assert!(
                    registered.iter().any(|s| s.file_name() == name),
                    "{name} is not registered in shaders.rs"
                );
            }
        }
    }
}
