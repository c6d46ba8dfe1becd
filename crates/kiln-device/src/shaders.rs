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
}

impl Shader {
    /// Every shader file.
    #[cfg(test)]
    pub(crate) const ALL: [Shader; 10] = [
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
        }
    }

    /// The WGSL source.
    pub(crate) fn source(self) -> &'static str {
        match self {
            Shader::Elementwise => concat!(
                include_str!("../../../shaders/prelude.wgsl"),
                include_str!("../../../shaders/elementwise.wgsl")
            ),
            Shader::Copy => concat!(
                include_str!("../../../shaders/prelude.wgsl"),
                include_str!("../../../shaders/copy.wgsl")
            ),
            Shader::Gemm => concat!(
                include_str!("../../../shaders/prelude.wgsl"),
                include_str!("../../../shaders/gemm.wgsl")
            ),
            Shader::Reduce => concat!(
                include_str!("../../../shaders/prelude.wgsl"),
                include_str!("../../../shaders/reduce.wgsl")
            ),
            Shader::Softmax => concat!(
                include_str!("../../../shaders/prelude.wgsl"),
                include_str!("../../../shaders/softmax.wgsl")
            ),
            Shader::Loss => concat!(
                include_str!("../../../shaders/prelude.wgsl"),
                include_str!("../../../shaders/loss.wgsl")
            ),
            Shader::Optimizer => concat!(
                include_str!("../../../shaders/prelude.wgsl"),
                include_str!("../../../shaders/optimizer.wgsl")
            ),
            Shader::Pool => concat!(
                include_str!("../../../shaders/prelude.wgsl"),
                include_str!("../../../shaders/pool.wgsl")
            ),
            Shader::Random => concat!(
                include_str!("../../../shaders/prelude.wgsl"),
                include_str!("../../../shaders/random.wgsl")
            ),
            Shader::Index => concat!(
                include_str!("../../../shaders/prelude.wgsl"),
                include_str!("../../../shaders/index.wgsl")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Parses and validates every `shaders/*.wgsl` with naga, so a broken shader fails on any machine.
    #[test]
    fn every_shader_parses_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shaders");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("shaders/ folder") {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "wgsl") {
                continue;
            }
            if path.file_name().is_some_and(|n| n == "prelude.wgsl") {
                continue;
            }
            let source = std::fs::read_to_string(dir.join("prelude.wgsl")).unwrap()
                + &std::fs::read_to_string(&path).unwrap();
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::all(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
            checked += 1;
        }
        assert!(
            checked >= 2,
            "found only {checked} shaders in {}",
            dir.display()
        );
    }

    /// Every file in `shaders/` is compiled into the binary through `Shader`.
    #[test]
    fn every_shader_file_is_registered() {
        use super::Shader;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shaders");
        let registered = Shader::ALL;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".wgsl") && name != "prelude.wgsl" {
                assert!(
                    registered.iter().any(|s| s.file_name() == name),
                    "{name} is not registered in shaders.rs"
                );
            }
        }
    }
}
