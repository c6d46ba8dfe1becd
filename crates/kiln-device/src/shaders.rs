//! The WGSL sources in the repository's `shaders/` folder, compiled into the binary.

/// One WGSL file, i.e. one kernel family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    /// `shaders/elementwise.wgsl`: unary, binary (broadcast) and scalar ops.
    Elementwise,
    /// `shaders/copy.wgsl`: contiguous copies, casts and fills.
    Copy,
}

impl Shader {
    /// The file name under `shaders/`.
    pub(crate) fn file_name(self) -> &'static str {
        match self {
            Shader::Elementwise => "elementwise.wgsl",
            Shader::Copy => "copy.wgsl",
        }
    }

    /// The WGSL source.
    pub(crate) fn source(self) -> &'static str {
        match self {
            Shader::Elementwise => include_str!("../../../shaders/elementwise.wgsl"),
            Shader::Copy => include_str!("../../../shaders/copy.wgsl"),
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
            let source = std::fs::read_to_string(&path).unwrap();
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
        let registered = [Shader::Elementwise, Shader::Copy];
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".wgsl") {
                assert!(
                    registered.iter().any(|s| s.file_name() == name),
                    "{name} is not registered in shaders.rs"
                );
            }
        }
    }
}
